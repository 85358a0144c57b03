-- rerankdb.nearest(text_query, collab_query, seq_query, k, exclude_seen_by,
-- exclude_item): the k items that score highest against a query, found
-- through the HNSW indexes.  The shared engine of rerankdb.recommend and
-- rerankdb.similar_items.
--
-- Score   rerankdb.rerank's: the text cosine with text_query, or
--         (1 - w) * text cosine + w * collaborative cosine where collab_query
--         is given and the item has a collaborative vector (w =
--         collab_weight * support / (support + collab_shrink)); then, where
--         seq_query is given, settings.sequence_weight s > 0 and the item has
--         a sequence vector, (1 - s) * that + s * the sequence cosine.
-- Search  with the hybrid index built for the current settings and
--         dimensions (rerankdb.refresh_hybrid_keys; rerankdb.hybrid_meta
--         says which) and every space it holds given: the pool is the
--         nearest greatest(2 * k, 40) items by that one index, of which the
--         best k + 10 by its key (it ranks by the score itself; the 10 more
--         cover its halfvec rounding) are scored, plus the items
--         embedded since its build (rerankdb.hybrid_keys_fresh: all of them
--         up to 256, else the nearest greatest(2 * k, 40) by text).
--         Otherwise two stages as before revision 0014: the nearest by text
--         (the HNSW index on item_vectors) and, with collab_query, by
--         collaborative key (rerankdb.collab_keys), each greatest(2 * k, 40)
--         deep (twice that with the sequence part, which reorders the pool).
--         hnsw.ef_search as the session sets it, 40 by default.  The pool is
--         scored exactly (item_rank) and the best k returned.
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
    seq_query vector,
    k integer,
    exclude_seen_by bigint default null,
    exclude_item bigint default null
) returns table (item_id bigint, score double precision, rank integer)
language plpgsql stable
set search_path = pg_catalog, public
set hnsw.iterative_scan = 'relaxed_order'
-- One plan for every call: choosing a custom plan each time cost more than the
-- search (the filters on parameters that do not apply are one-time filters).
set plan_cache_mode = 'force_generic_plan'
as $fn$
#variable_conflict use_column
declare
    depth bigint := greatest(2 * k::bigint, 40);  -- (bigint: k goes up to 2^31 - 1)
    w double precision;
    shrink double precision;
    seq_share double precision;
    hybrid_query halfvec;
    query_key vector;
    fresh bigint[];
    pool bigint[];
begin
    if k is null or k < 0 then
        raise exception 'rerankdb: k must be >= 0, got %', coalesce(k::text, 'NULL')
            using errcode = '22023';
    end if;
    if text_query is null or k = 0 then
        return;
    end if;
    -- One statement: the weights; the query key of the hybrid index where the index
    -- stands for the current score and this query (else NULL); up to 257 of the items
    -- embedded since its build.
    select st.collab_weight, st.collab_shrink, st.sequence_weight,
           case when st.collab_weight > 0 then collab_query end,
           case when st.sequence_weight > 0 then seq_query end,
           case when m.collab_weight = st.collab_weight and m.collab_shrink = st.collab_shrink
                     and m.sequence_weight = st.sequence_weight
                     and m.trained_at is not distinct from st.trained_at
                     and m.text_dim = vector_dims(text_query)
                     and (m.collab_dim = 0
                          or (st.collab_weight > 0 and vector_dims(collab_query) = m.collab_dim))
                     and (m.seq_dim = 0
                          or (st.sequence_weight > 0 and vector_dims(seq_query) = m.seq_dim))
                -- the user's key: the spaces the index holds side by side (rerankdb.hybrid_key
                -- with weights 1)
                then (case when m.collab_dim = 0 and m.seq_dim = 0 then text_query
                           when m.collab_dim = 0 then text_query || seq_query
                           when m.seq_dim = 0 then text_query || collab_query
                           else text_query || collab_query || seq_query
                      end)::halfvec
           end,
           array(select f.item_id from rerankdb.hybrid_keys_fresh f limit 257)
    into w, shrink, seq_share, collab_query, seq_query, hybrid_query, fresh
    from rerankdb.settings st
    left join rerankdb.hybrid_meta m on true;

    -- The pool: one statement per index searched (a plan with every branch costs its
    -- unused branches at every call).
    if hybrid_query is not null then
        -- The search returns its finds by batches (relaxed order): past the user's seen
        -- items a later batch can hold better ones, so it goes depth deep; of those the
        -- best k + 10 by the key are scored.
        pool := array(
            select p.item_id
            from (select hk.item_id, hk.key <#> hybrid_query as distance
                  from rerankdb.hybrid_keys hk
                  where hk.item_id is distinct from exclude_item
                    and not (exclude_seen_by is not null and exists (
                        select 1 from rerankdb.interactions i
                        where i.user_id = exclude_seen_by and i.item_id = hk.item_id))
                  order by hk.key <#> hybrid_query
                  limit depth) p
            order by p.distance + 0  -- (+ 0: a sort of its own, not the order the scan claims)
            limit k::bigint + 10);
        if cardinality(fresh) <= 256 then
            pool := pool || fresh;  -- filtered with the rest below
            fresh := null;
        end if;
    elsif seq_query is not null then
        depth := 2 * depth;
    end if;
    if hybrid_query is null or fresh is not null then
        pool := pool || array(
            select v.item_id
            from rerankdb.item_vectors v
            where v.item_id is distinct from exclude_item
              and not (exclude_seen_by is not null and exists (
                  select 1 from rerankdb.interactions i
                  where i.user_id = exclude_seen_by and i.item_id = v.item_id))
            order by v.embedding <#> text_query
            limit depth);
    end if;
    if hybrid_query is null and collab_query is not null then
        query_key := rerankdb.collab_key(collab_query);
        pool := pool || array(
            select ck.item_id
            from rerankdb.collab_keys ck
            where ck.item_id is distinct from exclude_item
              and not (exclude_seen_by is not null and exists (
                  select 1 from rerankdb.interactions i
                  where i.user_id = exclude_seen_by and i.item_id = ck.item_id))
            order by ck.key <#> query_key::vector(64)
            limit depth);
    end if;

    return query
        select s.item_id, s.score, (row_number() over (order by s.score desc, s.item_id))::integer
        from (
            select h.item_id,
                   case when seq_query is not null and h.seq is not null
                             and vector_dims(h.seq) = vector_dims(seq_query)
                        then h.hybrid + seq_share * (-(h.seq <#> seq_query) - h.hybrid)
                        else h.hybrid
                   end as score
            from (
                select r.item_id, r.seq,
                       case when collab_query is not null and r.collab is not null
                            then -(r.embedding <#> text_query)
                                 + w * r.support / (r.support + shrink)
                                   * (-(r.collab <#> collab_query) + (r.embedding <#> text_query))
                            else -(r.embedding <#> text_query)
                       end as hybrid
                from rerankdb.item_rank r
                -- (by key lookups whatever the size of the pool: a merge join would read the
                -- whole table in key order; a duplicate id is looked up once)
                where r.item_id = any (pool)
                  and r.item_id is distinct from exclude_item
                  and not (exclude_seen_by is not null and exists (
                      select 1 from rerankdb.interactions i
                      where i.user_id = exclude_seen_by and i.item_id = r.item_id))
            ) h
        ) s
        order by s.score desc, s.item_id
        limit k;
end
$fn$;
