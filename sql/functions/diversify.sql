-- rerankdb.diversify(item_ids, relevance, diversity, depth, use_collab): the
-- MMR (maximal marginal relevance) order of rerankdb.mmr, its bounds and
-- their order from the items' vectors read here: what rerankdb.rerank_scored
-- returns when diversity > 0 (rerankdb.rerank computes them in its own read).
--
-- Input   item_ids    distinct items, in their plain order (relevance
--                     descending, ties already broken)
--         relevance   one finite score per item (the score to keep)
--         diversity   the trade-off d in (0, 1]
--         depth       how many leading positions MMR chooses
--         use_collab  whether the similarity may use collaborative vectors
--                     (false where the score was text only)
-- Output  (item_id, score, rank): every input once: ranks 1..depth as
--         rerankdb.mmr chooses them, the rest in the plain order.  score is
--         the relevance, unchanged.
-- Similarity of a candidate c to a chosen item s: the text cosine, or
-- (1 - w_c) * text cosine + w_c * collaborative cosine where both have a
-- collaborative vector (w_c = collab_weight * support / (support + shrink),
-- as in rerankdb.rerank).  An item without a vector is similar to nothing (0).
create or replace function rerankdb.diversify(
    item_ids bigint[],
    relevance double precision[],
    diversity double precision,
    depth integer,
    use_collab boolean
) returns table (item_id bigint, score double precision, rank integer)
language plpgsql stable parallel safe
set search_path = pg_catalog, public
as $fn$
#variable_conflict use_column
declare
    n integer := coalesce(cardinality(item_ids), 0);
    cweight double precision;
    shrink double precision;
    ids bigint[];               -- the items, the first first, the rest by bound
    rels double precision[];
    positions bigint[];
    bounds double precision[];
    picks integer[];
begin
    if n = 0 then
        return;
    end if;
    if depth <= 1 or diversity <= 0 then
        return query
            select x.id, x.rel, x.ord::integer
            from unnest(item_ids, relevance) with ordinality as x(id, rel, ord)
            order by x.ord;
        return;
    end if;
    select case when use_collab then st.collab_weight else 0 end, st.collab_shrink
    into cweight, shrink
    from rerankdb.settings st;
    -- Each item's bound for rerankdb.mmr: its MMR score once the first item
    -- is chosen (the similarity written out, as in rerankdb.mmr).
    with v as materialized (
        select x.ord, x.id, x.rel, r.embedding::vector as t,  -- (halfvec where installed so)
               case when cweight > 0 then r.collab end as c,
               case when cweight > 0 and r.collab is not null
                    then cweight * r.support / (r.support + shrink) else 0 end as w
        from unnest(item_ids, relevance) with ordinality as x(id, rel, ord)
        left join rerankdb.item_rank r on r.item_id = x.id
    ), f as (
        select v.t, v.c from v where v.ord = 1
    )
    select array_agg(o.id), array_agg(o.rel), array_agg(o.ord), array_agg(o.bound)
    into ids, rels, positions, bounds
    from (
        select v.id, v.rel, v.ord, v.ord > 1 as later,
               (1 - diversity) * v.rel - diversity * (case when v.c is not null and f.c is not null
                                                           then (1 - v.w) * coalesce(-(v.t <#> f.t), 0) - v.w * (v.c <#> f.c)
                                                           else coalesce(-(v.t <#> f.t), 0) end) as bound
        from v cross join f
        order by later, bound desc, v.ord
    ) o;
    picks := rerankdb.mmr(ids, rels, positions, bounds, cweight, shrink, diversity, depth);
    return query
        select ids[x.i], rels[x.i], x.r::integer
        from unnest(picks) with ordinality as x(i, r)
        union all
        select y.id, y.rel, (cardinality(picks) + row_number() over (order by y.ord))::integer
        from unnest(ids, rels, positions) with ordinality as y(id, rel, ord, i)
        where y.i <> all(picks)
        order by 3;
end
$fn$;
