-- rerankdb.dimension(): the embedding dimension fixed when the schema was
-- installed (rerankdb.config.dim).  Every writer of vectors checks against it.
-- Security: runs with its owner's rights (security definer, search_path
-- pinned, names schema-qualified), so callers need EXECUTE on it and no
-- access to the tables it reads or writes (README, "Roles").
create or replace function rerankdb.dimension() returns integer
language sql stable parallel safe
security definer
set search_path = pg_catalog
as $fn$
    select dim from rerankdb.config
$fn$;
