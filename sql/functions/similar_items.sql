-- rerankdb.similar_items(source_item_id, k): the k items nearest to an item's
-- vector, through the HNSW index, excluding the item itself.  (The input is
-- not called item_id because PostgreSQL forbids an input and an output
-- parameter of the same name; call it positionally.)
--
-- Output  (item_id, score, rank) like rerankdb.rerank: cosine similarity,
--         highest first, ties by item_id; rank counts from 1.
-- Edge    an unknown item or one without a vector: no rows.  k = 0: no rows.
--         k NULL or < 0: error 22023.  Approximate (HNSW).
create or replace function rerankdb.similar_items(
    source_item_id bigint,
    k integer default 10
) returns table (item_id bigint, score double precision, rank integer)
language plpgsql stable
set search_path = pg_catalog, public
set hnsw.iterative_scan = 'relaxed_order'
as $fn$
#variable_conflict use_column
declare
    item_embedding vector;
begin
    if k is null or k < 0 then
        raise exception 'rerankdb.similar_items: k must be >= 0, got %', coalesce(k::text, 'NULL')
            using errcode = '22023';
    end if;

    select v.embedding into item_embedding
    from rerankdb.item_vectors v
    where v.item_id = similar_items.source_item_id;
    if item_embedding is null or k = 0 then
        return;
    end if;

    return query
        select n.item_id, n.score, (row_number() over (order by n.score desc, n.item_id))::integer
        from (
            select v.item_id, -(v.embedding <#> item_embedding) as score
            from rerankdb.item_vectors v
            where v.item_id <> similar_items.source_item_id
            order by v.embedding <#> item_embedding
            limit k
        ) n
        order by n.score desc, n.item_id;
end
$fn$;
