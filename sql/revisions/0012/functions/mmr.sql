-- rerankdb.mmr(item_ids, relevance, bounds, use_collab, diversity, depth):
-- the MMR (maximal marginal relevance) order of scored items, for
-- rerankdb.rerank (whose one read of the candidates gives the bounds) and
-- rerankdb.diversify.
--
-- Input   item_ids    distinct items, in their plain order (relevance
--                     descending, ties already broken)
--         relevance   one finite score per item (the score to keep)
--         bounds      per item, (1 - d) * relevance - d * its similarity to
--                     the first item (the first item's own: any), below
--         use_collab  whether the similarity may use collaborative vectors
--                     (false where the score was text only)
--         diversity   the trade-off d in (0, 1]
--         depth       how many leading positions MMR chooses
--         The arrays have one element per item (the callers' contract: not
--         checked here, they build them in one query).
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
-- Cost: lazy greedy, exact (not an approximation).  An item's MMR score only
-- falls as items are chosen, so the last score computed for it bounds it
-- from above (before any: its bound, its score once the first item is
-- chosen).  Each step takes the item with the highest bound, brings its
-- score up to date with the items chosen since (its similarity to each), and
-- chooses it if that still beats every other bound; else it tries the next.
-- Items are touched in order of their bounds, so most are never scored and
-- their vectors never read: only the touched items' vectors are read
-- (rerankdb.item_rank, a few dozen at a time).
create or replace function rerankdb.mmr(
    item_ids bigint[],
    relevance double precision[],
    bounds double precision[],
    use_collab boolean,
    diversity double precision,
    depth integer
) returns table (item_id bigint, score double precision, rank integer)
language plpgsql stable parallel safe
set search_path = pg_catalog, public
as $fn$
#variable_conflict use_column
declare
    n integer := coalesce(cardinality(item_ids), 0);
    lam double precision := diversity;
    by_bound integer[];        -- plain positions, by bound (highest first, ties to the plain order)
    head integer := 2;         -- by_bound[head]: the best item never touched (1 is the first pick)
    fetched integer := 0;      -- by_bound[1..fetched] have their vectors in te, ce, cw
    te vector[];               -- by plain position (halfvec where installed so)
    ce vector[];
    cw double precision[];
    cur double precision[];    -- a touched item's last score (an upper bound of its score now)
    mx double precision[];     -- its max similarity to the picks counted
    counted integer[];         -- how many picks its cur counts
    touched integer[] := '{}'; -- touched, not chosen
    picks integer[] := array[1];
    c integer;
    b integer;
    j integer;
    p integer;
    best double precision;
    other double precision;
    other_pos integer;
    sim double precision;
    chunk integer;
    got_pos integer[];
    got_t vector[];
    got_c vector[];
    got_w double precision[];
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
    use_collab := use_collab and cweight > 0;
    select array_agg(x.ord::integer order by case when x.ord = 1 then 'Infinity' else x.b end desc, x.ord)
    into by_bound
    from unnest(bounds) with ordinality as x(b, ord);
    te := array_fill(null::vector, array[n]);
    ce := te;
    cw := array_fill(0::double precision, array[n]);
    cur := array_fill(null::double precision, array[n]);
    mx := array_fill('-Infinity'::double precision, array[n]);
    counted := array_fill(0, array[n]);
    chunk := greatest(2 * depth, 16);

    for t in 2..depth loop
        loop
            -- The two best bounds among the touched (one scan), and the head's
            -- (never touched): the best is scored, the next is what it must beat.
            c := null;
            other_pos := null;
            foreach j in array touched loop
                if c is null or cur[j] > cur[c] or (cur[j] = cur[c] and j < c) then
                    other_pos := c;
                    c := j;
                elsif other_pos is null or cur[j] > cur[other_pos] or (cur[j] = cur[other_pos] and j < other_pos) then
                    other_pos := j;
                end if;
            end loop;
            if head <= n and (c is null or bounds[by_bound[head]] > cur[c]
                              or (bounds[by_bound[head]] = cur[c] and by_bound[head] < c)) then
                other_pos := c;
                c := by_bound[head];
                head := head + 1;
                touched := touched || c;
            end if;
            -- Its vectors, and those of the next few by bound, if not read yet.
            while fetched < n and fetched < head - 1 loop
                select array_agg(x.pos order by x.k), array_agg(r.embedding::vector order by x.k),
                       array_agg(case when use_collab then r.collab end order by x.k),
                       array_agg(case when use_collab and r.collab is not null
                                      then cweight * r.support / (r.support + shrink) else 0 end order by x.k)
                into got_pos, got_t, got_c, got_w
                from (select by_bound[k] as pos, k from generate_series(fetched + 1, least(n, fetched + chunk)) k) x
                left join rerankdb.item_rank r on r.item_id = item_ids[x.pos];
                for j in 1 .. cardinality(got_pos) loop
                    te[got_pos[j]] := got_t[j];
                    ce[got_pos[j]] := got_c[j];
                    cw[got_pos[j]] := got_w[j];
                end loop;
                fetched := least(n, fetched + chunk);
            end loop;
            -- Its score with the picks made since it was last scored.
            for j in counted[c] + 1 .. cardinality(picks) loop
                p := picks[j];
                sim := case when ce[c] is not null and ce[p] is not null
                            then (1 - cw[c]) * coalesce(-(te[c] <#> te[p]), 0) - cw[c] * (ce[c] <#> ce[p])
                            else coalesce(-(te[c] <#> te[p]), 0) end;
                if sim > mx[c] then
                    mx[c] := sim;
                end if;
            end loop;
            counted[c] := cardinality(picks);
            cur[c] := (1 - lam) * relevance[c] - lam * mx[c];
            -- Chosen if it still beats every other bound (ties to the plain order).
            other := case when other_pos is not null then cur[other_pos] end;
            if (other_pos is null or cur[c] > other or (cur[c] = other and c < other_pos))
               and (head > n or cur[c] > bounds[by_bound[head]]
                    or (cur[c] = bounds[by_bound[head]] and c < by_bound[head])) then
                picks := picks || c;
                touched := array_remove(touched, c);
                exit;
            end if;
        end loop;
    end loop;

    return query
        with chosen as (
            select ch.pos, ch.r::integer as rank from unnest(picks) with ordinality as ch(pos, r)
        )
        select x.id, x.rel, coalesce(ch.rank, depth + (row_number() over (partition by ch.rank is null order by x.ord))::integer)
        from unnest(item_ids, relevance) with ordinality as x(id, rel, ord)
        left join chosen ch on ch.pos = x.ord
        order by 3;
end
$fn$;
