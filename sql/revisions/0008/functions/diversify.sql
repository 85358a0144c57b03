-- rerankdb.diversify(item_ids, relevance, diversity, depth, use_collab): the
-- MMR (maximal marginal relevance) order that rerankdb.rerank and
-- rerankdb.rerank_scored return when diversity > 0.
--
-- Input   item_ids    distinct items, in their plain order (relevance
--                     descending, ties already broken)
--         relevance   one finite score per item (the score to keep)
--         diversity   the trade-off d in (0, 1]
--         depth       how many leading positions MMR chooses
--         use_collab  whether the similarity may use collaborative vectors
--                     (false where the score was text only)
-- Output  (item_id, score, rank): every input once.  Ranks 1..depth are
--         chosen greedily: each next item maximizes
--             (1 - d) * relevance - d * max similarity to the items chosen,
--         over all the items not chosen yet (not only the first depth), ties
--         to the plain order; rank 1 is the most relevant item.  The rest
--         follow in plain order.  score is the relevance, unchanged.
-- Similarity of a candidate c to a chosen item s: the score's own formula
-- with s's vectors in place of the user's: the text cosine, or
-- (1 - w_c) * text cosine + w_c * collaborative cosine where both have a
-- collaborative vector (w_c = collab_weight * support / (support + shrink),
-- as in rerankdb.rerank).  An item without a vector is similar to nothing (0).
-- Cost: one pass over every item (its similarity to the first pick), then
-- greedy steps over a window of the items whose bound can still win, grown
-- until the items outside it provably cannot: the order is exact, not an
-- approximation.  The bound: an item's MMR score only falls as items are
-- chosen, so (1 - d) * relevance - d * similarity to the first pick bounds
-- it at every step, and the chosen scores never rise from step to step; an
-- item outside the window whose bound is below the last chosen score can
-- never have been chosen.
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
    lam double precision := diversity;
    te vector[];            -- text vectors, plain order
    ce vector[];            -- collaborative vectors (NULL: none, or not used)
    cw double precision[];  -- each item's collaborative weight
    bound double precision[];
    outside double precision;  -- the best bound outside the window
    win integer[];           -- the window: plain positions, by bound
    ms double precision[];   -- per window slot: max similarity to the chosen
    taken boolean[];
    picks integer[];
    wsize integer;
    best integer;
    best_score double precision;
    last_score double precision;
    m double precision;
    p integer;
    q integer;
    t integer;
    i integer;
    cweight double precision;
    shrink double precision;
begin
    depth := least(depth, n);
    if n = 0 then
        return;
    end if;
    if depth <= 1 or lam <= 0 then
        return query
            select x.id, x.rel, x.ord::integer
            from unnest(item_ids, relevance) with ordinality as x(id, rel, ord)
            order by x.ord;
        return;
    end if;
    select st.collab_weight, st.collab_shrink into cweight, shrink from rerankdb.settings st;
    select array_agg(r.embedding::vector order by x.ord),  -- (halfvec where installed so)
           array_agg(case when use_collab and cweight > 0 then r.collab end order by x.ord),
           array_agg(case when use_collab and cweight > 0 and r.collab is not null
                          then cweight * r.support / (r.support + shrink) else 0 end order by x.ord)
    into te, ce, cw
    from unnest(item_ids) with ordinality as x(id, ord)
    left join rerankdb.item_rank r on r.item_id = x.id;

    -- Every item's bound: its MMR score once the first item is chosen.
    -- (The similarity is written out here and in the step below, not called:
    -- a function call per item costs more than the product.)
    select array_agg((1 - lam) * x.rel - lam * (case when x.c is not null and ce[1] is not null
                                                     then (1 - x.w) * coalesce(-(x.t <#> te[1]), 0) - x.w * (x.c <#> ce[1])
                                                     else coalesce(-(x.t <#> te[1]), 0) end)
                     order by x.ord)
    into bound
    from unnest(te, ce, cw, relevance) with ordinality as x(t, c, w, rel, ord);
    bound[1] := 'Infinity';  -- chosen first

    wsize := least(n, greatest(4 * depth, 50));
    loop
        select array_agg(y.ord order by y.b desc, y.ord) into win
        from (select x.ord::integer as ord, x.b from unnest(bound) with ordinality as x(b, ord)
              order by x.b desc, x.ord limit wsize) y;
        select max(x.b) into outside
        from (select x.b from unnest(bound) with ordinality as x(b, ord)
              order by x.b desc, x.ord offset wsize) x;
        -- Greedy steps within the window (slot 1 is the first pick).
        ms := array_fill('-Infinity'::double precision, array[wsize]);
        taken := array_fill(false, array[wsize]);
        taken[1] := true;
        picks := array[1];
        p := 1;
        for t in 2..depth loop
            q := win[p];
            select array_agg(greatest(x.m, case when ce[x.o] is not null and ce[q] is not null
                                                then (1 - cw[x.o]) * coalesce(-(te[x.o] <#> te[q]), 0) - cw[x.o] * (ce[x.o] <#> ce[q])
                                                else coalesce(-(te[x.o] <#> te[q]), 0) end)
                             order by x.slot)
            into ms
            from unnest(win, ms) with ordinality as x(o, m, slot);
            best := null;
            for i in 2..wsize loop
                if not taken[i] then
                    m := (1 - lam) * relevance[win[i]] - lam * ms[i];
                    -- ties to the plain order
                    if best is null or m > best_score or (m = best_score and win[i] < win[best]) then
                        best := i;
                        best_score := m;
                    end if;
                end if;
            end loop;
            taken[best] := true;
            picks := picks || best;
            p := best;
            last_score := best_score;
        end loop;
        exit when outside is null or outside < last_score;
        wsize := least(n, wsize * 2);
    end loop;

    return query
        with chosen as (
            select win[c.slot] as ord, c.r::integer as rank
            from unnest(picks) with ordinality as c(slot, r)
        )
        select x.id, x.rel, coalesce(ch.rank, depth + (row_number() over (partition by ch.rank is null order by x.ord))::integer)
        from unnest(item_ids, relevance) with ordinality as x(id, rel, ord)
        left join chosen ch on ch.ord = x.ord
        order by 3;
end
$fn$;
