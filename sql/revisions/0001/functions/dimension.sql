-- rerankdb.dimension(): the embedding dimension fixed when the schema was
-- installed (rerankdb.config.dim).  Every writer of vectors checks against it.
create or replace function rerankdb.dimension() returns integer
language sql stable parallel safe
set search_path = pg_catalog
as $fn$
    select dim from rerankdb.config
$fn$;
