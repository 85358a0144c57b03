-- rerankdb.mmr(item_ids, relevance, text_vectors, collab_vectors,
-- collab_weights, diversity, depth): the MMR (maximal marginal relevance)
-- order of items whose vectors the caller has already read: rerankdb.rerank
-- passes those of its scoring (one read of each candidate), rerankdb.diversify
-- those it reads.
--
-- Input   item_ids        distinct items, in their plain order (relevance
--                         descending, ties already broken)
--         relevance       one finite score per item (the score to keep)
--         text_vectors    per item, its unit text vector (NULL: none)
--         collab_vectors  per item, its unit collaborative vector, or NULL
--                         (none, or the similarity is text only)
--         collab_weights  per item, w = collab_weight * support / (support +
--                         collab_shrink) where it has a collaborative vector
--         diversity       the trade-off d in (0, 1]
--         depth           how many leading positions MMR chooses
--         The arrays have one element per item (the caller's contract: not
--         checked here, the callers build them from one query).
-- Output  (item_id, score, rank): every input once.  Ranks 1..depth are
--         chosen greedily: each next item maximizes
--             (1 - d) * relevance - d * max similarity to the items chosen,
--         over all the items not chosen yet (not only the first depth), ties
--         to the plain order; rank 1 is the most relevant item.  The rest
--         follow in plain order.  score is the relevance, unchanged.
-- Similarity of a candidate c to a chosen item s: the score's own formula
-- with s's vectors in place of the user's: the text cosine, or
-- (1 - w_c) * text cosine + w_c * collaborative cosine where both have a
-- collaborative vector.  An item without a vector is similar to nothing (0).
-- Cost: one pass over every item (its similarity to the first pick), then
-- greedy steps over a window of the items whose bound can still win, grown
-- until the items outside it provably cannot: the order is exact, not an
-- approximation.  The bound: an item's MMR score only falls as items are
-- chosen, so (1 - d) * relevance - d * similarity to the first pick bounds
-- it at every step, and the chosen scores never rise from step to step; an
-- item outside the window whose bound is below the last chosen score can
-- never have been chosen.  Each greedy step is one statement over the
-- window's own arrays (a chosen slot's similarity set to +Infinity takes it
-- out of the running).
create or replace function rerankdb.mmr(
    item_ids bigint[],
    relevance double precision[],
    text_vectors vector[],
    collab_vectors vector[],
    collab_weights double precision[],
    diversity double precision,
    depth integer
) returns table (item_id bigint, score double precision, rank integer)
language plpgsql immutable parallel safe
set search_path = pg_catalog, public
as $fn$
#variable_conflict use_column
declare
    n integer := coalesce(cardinality(item_ids), 0);
    lam double precision := diversity;
    bound double precision[];
    outside double precision;  -- the best bound outside the window
    win integer[];             -- the window: plain positions, by bound
    wt vector[];               -- the window's vectors, weights and relevance, by slot
    wc vector[];
    ww double precision[];
    wrel double precision[];
    ms double precision[];     -- per slot: max similarity to the chosen (+Infinity: chosen)
    picks integer[];
    wsize integer;
    best integer;
    best_score double precision;
    last_score double precision;
    tq vector;                 -- the last pick's vectors
    cq vector;
    t integer;
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

    -- Every item's bound: its MMR score once the first item is chosen.
    -- (The similarity is written out here and in the step below, not called:
    -- a function call per item costs more than the product.)
    tq := text_vectors[1];
    cq := collab_vectors[1];
    select array_agg((1 - lam) * x.rel - lam * (case when x.c is not null and cq is not null
                                                     then (1 - x.w) * coalesce(-(x.t <#> tq), 0) - x.w * (x.c <#> cq)
                                                     else coalesce(-(x.t <#> tq), 0) end)
                     order by x.ord)
    into bound
    from unnest(text_vectors, collab_vectors, collab_weights, relevance) with ordinality as x(t, c, w, rel, ord);
    bound[1] := 'Infinity';  -- chosen first

    wsize := least(n, greatest(2 * depth, 30));
    loop
        select array_agg(y.ord order by y.b desc, y.ord) into win
        from (select x.ord::integer as ord, x.b from unnest(bound) with ordinality as x(b, ord)
              order by x.b desc, x.ord limit wsize) y;
        select max(x.b) into outside
        from (select x.b from unnest(bound) with ordinality as x(b, ord)
              order by x.b desc, x.ord offset wsize) x;
        select array_agg(text_vectors[w.o] order by w.slot), array_agg(collab_vectors[w.o] order by w.slot),
               array_agg(collab_weights[w.o] order by w.slot), array_agg(relevance[w.o] order by w.slot)
        into wt, wc, ww, wrel
        from unnest(win) with ordinality as w(o, slot);
        -- Greedy steps within the window (slot 1 is the first pick).
        ms := array_fill('-Infinity'::double precision, array[wsize]);
        ms[1] := 'Infinity';
        picks := array[1];
        tq := wt[1];
        cq := wc[1];
        for t in 2..depth loop
            -- Each slot's similarity to the last pick joins its max; the next
            -- pick is the best MMR score, ties to the plain order.
            select array_agg(z.m order by z.slot),
                   (array_agg(z.slot order by (1 - lam) * z.rel - lam * z.m desc, z.o))[1],
                   max((1 - lam) * z.rel - lam * z.m)
            into ms, best, best_score
            from (
                select x.slot, x.o, x.rel,
                       greatest(x.m, case when x.c is not null and cq is not null
                                          then (1 - x.w) * coalesce(-(x.t <#> tq), 0) - x.w * (x.c <#> cq)
                                          else coalesce(-(x.t <#> tq), 0) end) as m
                from unnest(wt, wc, ww, wrel, ms, win) with ordinality as x(t, c, w, rel, m, o, slot)
            ) z;
            ms[best] := 'Infinity';
            picks := picks || best;
            tq := wt[best];
            cq := wc[best];
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
