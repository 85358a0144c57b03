-- rerankdb.diversify(item_ids, relevance, diversity, depth, use_collab): the
-- MMR (maximal marginal relevance) order of rerankdb.mmr, its bounds from the
-- items' vectors read here: what rerankdb.rerank_scored returns when
-- diversity > 0 (rerankdb.rerank computes the bounds in its own read).
--
-- Input   item_ids    distinct items, in their plain order (relevance
--                     descending, ties already broken)
--         relevance   one finite score per item (the score to keep)
--         diversity   the trade-off d in (0, 1]
--         depth       how many leading positions MMR chooses
--         use_collab  whether the similarity may use collaborative vectors
--                     (false where the score was text only)
-- Output  (item_id, score, rank): every input once, as rerankdb.mmr orders
--         them.  score is the relevance, unchanged.
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
    bounds double precision[];
    cweight double precision;
    shrink double precision;
    lam double precision := diversity;
begin
    if coalesce(cardinality(item_ids), 0) = 0 then
        return;
    end if;
    if depth > 1 and diversity > 0 then
        -- Each item's bound for rerankdb.mmr: its MMR score once the first
        -- item is chosen (the similarity written out, as in rerankdb.mmr).
        select st.collab_weight, st.collab_shrink into cweight, shrink from rerankdb.settings st;
        with v as materialized (
            select x.ord, x.rel, r.embedding::vector as t,  -- (halfvec where installed so)
                   case when use_collab and cweight > 0 then r.collab end as c,
                   case when use_collab and cweight > 0 and r.collab is not null
                        then cweight * r.support / (r.support + shrink) else 0 end as w
            from unnest(item_ids, relevance) with ordinality as x(id, rel, ord)
            left join rerankdb.item_rank r on r.item_id = x.id
        ), f as (
            select v.t, v.c from v where v.ord = 1
        )
        select array_agg((1 - lam) * v.rel - lam * (case when v.c is not null and f.c is not null
                                                          then (1 - v.w) * coalesce(-(v.t <#> f.t), 0) - v.w * (v.c <#> f.c)
                                                          else coalesce(-(v.t <#> f.t), 0) end)
                         order by v.ord)
        into bounds
        from v cross join f;
    end if;
    return query
        select m.item_id, m.score, m.rank
        from rerankdb.mmr(item_ids, relevance, bounds, use_collab, diversity, depth) m;
end
$fn$;
