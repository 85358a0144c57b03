-- rerankdb.counts(): how many items, item vectors, user vectors and
-- interactions are stored (exact counts: a full scan of each table; the
-- cheap health figures are in the rerankdb.status view).
create or replace function rerankdb.counts(
    out items bigint, out item_vectors bigint, out user_vectors bigint, out interactions bigint
)
language sql stable
security definer
set search_path = pg_catalog
as $fn$
    select (select count(*) from rerankdb.items),
           (select count(*) from rerankdb.item_vectors),
           (select count(*) from rerankdb.user_vectors),
           (select count(*) from rerankdb.interactions)
$fn$;
