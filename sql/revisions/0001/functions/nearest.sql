-- rerankdb.nearest(query, k, exclude_seen_by, exclude_item): the k items whose
-- vectors are nearest to `query`, through the HNSW index.  The shared engine
-- of rerankdb.recommend and rerankdb.similar_items.
--
-- Output  (item_id, score, rank): score is the cosine similarity, highest
--         first, ties by item_id; rank counts from 1.
-- Filters exclude_seen_by (a user id, or NULL) leaves out every item that user
--         has an interaction with; exclude_item (or NULL) leaves out one item.
--         pgvector's iterative index scan keeps searching past filtered rows
--         (up to hnsw.max_scan_tuples, 20,000 by default), so k rows come
--         back whenever k eligible items exist.
-- Edge    query NULL or k = 0: no rows.  k NULL or < 0: error 22023.
--         Approximate, as HNSW search is.
create or replace function rerankdb.nearest(
    query vector,
    k integer,
    exclude_seen_by bigint default null,
    exclude_item bigint default null
) returns table (item_id bigint, score double precision, rank integer)
language plpgsql stable
set search_path = pg_catalog, public
set hnsw.iterative_scan = 'relaxed_order'
as $fn$
#variable_conflict use_column
begin
    if k is null or k < 0 then
        raise exception 'rerankdb: k must be >= 0, got %', coalesce(k::text, 'NULL')
            using errcode = '22023';
    end if;
    if query is null or k = 0 then
        return;
    end if;

    return query
        select n.item_id, n.score, (row_number() over (order by n.score desc, n.item_id))::integer
        from (
            select v.item_id, -(v.embedding <#> query) as score
            from rerankdb.item_vectors v
            where v.item_id is distinct from exclude_item
              and not (exclude_seen_by is not null and exists (
                  select 1 from rerankdb.interactions i
                  where i.user_id = exclude_seen_by and i.item_id = v.item_id))
            order by v.embedding <#> query
            limit k
        ) n
        order by n.score desc, n.item_id;
end
$fn$;
