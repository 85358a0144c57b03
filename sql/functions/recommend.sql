-- rerankdb.recommend(user_id, k, exclude_seen): the k items nearest to the
-- user's vector, found through the HNSW index (no candidate list needed).
--
-- Output  (item_id, score, rank) like rerankdb.rerank: score is the cosine
--         similarity, highest first, ties by item_id; rank counts from 1.
-- exclude_seen (default true) leaves out every item the user has an
--         interaction with, and still returns k rows when k unseen items
--         exist: pgvector's iterative index scan keeps searching past
--         filtered rows (up to hnsw.max_scan_tuples, 20,000 by default).
-- Edge    a user without a vector (cold start): no rows.  k = 0: no rows.
--         k NULL or < 0: error 22023.  Results are approximate (HNSW), as
--         nearest-neighbour search over a whole catalog is.
create or replace function rerankdb.recommend(
    user_id bigint,
    k integer default 10,
    exclude_seen boolean default true
) returns table (item_id bigint, score double precision, rank integer)
language plpgsql stable
set search_path = pg_catalog, public
set hnsw.iterative_scan = 'relaxed_order'
as $fn$
#variable_conflict use_column
declare
    user_embedding vector;
begin
    if k is null or k < 0 then
        raise exception 'rerankdb.recommend: k must be >= 0, got %', coalesce(k::text, 'NULL')
            using errcode = '22023';
    end if;

    select u.embedding into user_embedding
    from rerankdb.user_vectors u
    where u.user_id = recommend.user_id;
    if user_embedding is null or k = 0 then
        return;
    end if;

    return query
        select n.item_id, n.score, (row_number() over (order by n.score desc, n.item_id))::integer
        from (
            select v.item_id, -(v.embedding <#> user_embedding) as score
            from rerankdb.item_vectors v
            where not (exclude_seen and exists (
                select 1 from rerankdb.interactions i
                where i.user_id = recommend.user_id and i.item_id = v.item_id))
            order by v.embedding <#> user_embedding
            limit k
        ) n
        order by n.score desc, n.item_id;
end
$fn$;
