-- Frozen copy: the version revision 0001 installs (and 0004's downgrade
-- target).  The current version is functions/recommend.sql.
-- rerankdb.recommend(user_id, k, exclude_seen): the k items nearest to the
-- user's vector, found through the HNSW index (no candidate list needed).
--
-- Output  (item_id, score, rank) like rerankdb.rerank: score is the cosine
--         similarity, highest first, ties by item_id; rank counts from 1.
-- exclude_seen (default true) leaves out every item the user has an
--         interaction with, and still returns k rows when k unseen items
--         exist (pgvector's iterative index scan; see rerankdb.nearest).
-- Edge    a user without a vector (cold start): no rows.  k = 0: no rows.
--         k NULL or < 0: error 22023.  Approximate (HNSW).
create or replace function rerankdb.recommend(
    user_id bigint,
    k integer default 10,
    exclude_seen boolean default true
) returns table (item_id bigint, score double precision, rank integer)
language sql stable
set search_path = pg_catalog, public
as $fn$
    select n.item_id, n.score, n.rank
    from rerankdb.nearest(
        (select u.embedding from rerankdb.user_vectors u where u.user_id = recommend.user_id),
        k,
        case when exclude_seen then recommend.user_id end
    ) n
$fn$;
