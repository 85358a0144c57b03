-- rerankdb.nearest(text_query, collab_query, k, exclude_seen_by, exclude_item):
-- the k items that score highest against a query, found through the HNSW
-- indexes.  The shared engine of rerankdb.recommend and rerankdb.similar_items.
--
-- Score   rerankdb.rerank's: the text cosine with text_query, or
--         (1 - w) * text cosine + w * collaborative cosine where collab_query
--         is given and the item has a collaborative vector (w =
--         collab_weight * support / (support + collab_shrink)).
-- Search  two stages: the pool is the nearest items by text (the HNSW index
--         on item_vectors) and, with collab_query, the nearest by
--         collaborative key (the HNSW index of rerankdb.collab_keys, rebuilt
--         after each training), each greatest(2 * k, 40) deep (hnsw.ef_search
--         as the session sets it, 40 by default); the pool is scored exactly
--         (item_rank) and the best k returned.
-- Output  (item_id, score, rank): highest score first, ties by item_id; rank
--         counts from 1.
-- Filters exclude_seen_by (a user id, or NULL) leaves out every item that user
--         has an interaction with; exclude_item (or NULL) leaves out one item.
--         pgvector's iterative index scan keeps searching past filtered rows
--         (up to hnsw.max_scan_tuples, 20,000 by default), so k rows come
--         back whenever k eligible items exist.
-- Edge    text_query NULL or k = 0: no rows.  k NULL or < 0: error 22023.
--         Approximate, as HNSW search is.
create or replace function rerankdb.nearest(
    text_query vector,
    collab_query vector,
    k integer,
    exclude_seen_by bigint default null,
    exclude_item bigint default null
) returns table (item_id bigint, score double precision, rank integer)
language plpgsql stable
set search_path = pg_catalog, public
set hnsw.iterative_scan = 'relaxed_order'
as $fn$
#variable_conflict use_column
declare
    depth integer;
    w double precision;
    shrink double precision;
    query_key vector;
begin
    if k is null or k < 0 then
        raise exception 'rerankdb: k must be >= 0, got %', coalesce(k::text, 'NULL')
            using errcode = '22023';
    end if;
    if text_query is null or k = 0 then
        return;
    end if;
    depth := greatest(2 * k, 40);
    select st.collab_weight, st.collab_shrink into w, shrink from rerankdb.settings st;
    if w = 0 then
        collab_query := null;
    end if;
    query_key := rerankdb.collab_key(collab_query);

    return query
        with pool as (
            (select v.item_id
             from rerankdb.item_vectors v
             where v.item_id is distinct from exclude_item
               and not (exclude_seen_by is not null and exists (
                   select 1 from rerankdb.interactions i
                   where i.user_id = exclude_seen_by and i.item_id = v.item_id))
             order by v.embedding <#> text_query
             limit depth)
            union
            (select ck.item_id
             from rerankdb.collab_keys ck
             where query_key is not null
               and ck.item_id is distinct from exclude_item
               and not (exclude_seen_by is not null and exists (
                   select 1 from rerankdb.interactions i
                   where i.user_id = exclude_seen_by and i.item_id = ck.item_id))
             order by ck.key <#> query_key::vector(64)
             limit depth)
        )
        select s.item_id, s.score, (row_number() over (order by s.score desc, s.item_id))::integer
        from (
            select r.item_id,
                   case when collab_query is not null and r.collab is not null
                        then -(r.embedding <#> text_query)
                             + w * r.support / (r.support + shrink)
                               * (-(r.collab <#> collab_query) + (r.embedding <#> text_query))
                        else -(r.embedding <#> text_query)
                   end as score
            from pool p
            join rerankdb.item_rank r on r.item_id = p.item_id
        ) s
        order by s.score desc, s.item_id
        limit k;
end
$fn$;
