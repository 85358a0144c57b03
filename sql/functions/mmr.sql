-- rerankdb.mmr(item_ids, relevance, positions, bounds, collab_weight,
-- collab_shrink, diversity, depth): the MMR (maximal marginal relevance)
-- picks among scored items, for rerankdb.rerank and rerankdb.diversify
-- (whose one read of the candidates gives the bounds and the order).
--
-- Input   item_ids    distinct items, the most relevant first, the rest by
--                     bound (highest first, ties to the plain order)
--         relevance   each one's finite score (the score to keep)
--         positions   each one's input position: the plain order is
--                     relevance descending, then position
--         bounds      each one's MMR score once the first is chosen:
--                     (1 - d) * relevance - d * its similarity to the first
--                     (the first's own: any)
--         collab_weight, collab_shrink  the settings' (collab_weight 0:
--                     the similarity is the text cosine alone)
--         diversity   the trade-off d in (0, 1]
--         depth       how many to choose
--         The arrays have one element per item (the callers' contract: not
--         checked here, they build them in one query).
-- Output  the indexes (into the arrays) of the min(depth, n) items chosen,
--         in order: the first item, then each next maximizing
--             (1 - d) * relevance - d * max similarity to the items chosen,
--         over all the items not chosen yet (not only the first depth), ties
--         to the plain order.  The caller ranks the rest.
-- Similarity of a candidate c to a chosen item s: the score's own formula
-- with s's vectors in place of the user's: the text cosine, or
-- (1 - w_c) * text cosine + w_c * collaborative cosine where both have a
-- collaborative vector (w_c = collab_weight * support / (support + shrink),
-- as in rerankdb.rerank).  An item without a vector is similar to nothing (0).
-- Cost: exact (not an approximation), and lazy twice over.  An item's MMR
-- score only falls as items are chosen, so its last computed score bounds it
-- from above (before any: its bound).  Items are taken in by bound, only
-- while the next bound could beat the best score of the step; an item taken
-- in is brought up to date with the picks since its last score only when
-- that score could still beat the best so far.  Only the vectors of the
-- items taken in are read (rerankdb.item_rank, a few dozen at a time), into
-- arrays, and each similarity is one expression on them.
create or replace function rerankdb.mmr(
    item_ids bigint[],
    relevance double precision[],
    positions bigint[],
    bounds double precision[],
    collab_weight double precision,
    collab_shrink double precision,
    diversity double precision,
    depth integer
) returns integer[]
language plpgsql stable parallel safe
set search_path = pg_catalog, public
as $fn$
declare
    n integer := coalesce(cardinality(item_ids), 0);
    lam double precision := diversity;
    te vector[];               -- items 1..fetched: their vectors (halfvec where installed so)
    ce vector[];
    cw double precision[];
    fetched integer := 0;
    chunk integer;
    mx double precision[];     -- an item taken in: its max similarity to picks[1..counted]
    counted integer[];
    cur double precision[];    -- its score with those picks: an upper bound of its score now
    active integer[] := '{}';  -- taken in, not chosen
    picks integer[] := array[1];
    head integer := 2;         -- the next item to take in
    i integer;
    old integer;               -- how many of active were taken in before this step
    c integer;
    p integer;
    best integer;
    best_score double precision;
    tc vector;                 -- item c's vectors and weight, and its max similarity so far
    cc vector;
    wc double precision;
    m double precision;
    got record;
begin
    depth := least(depth, n);
    if depth <= 1 or lam <= 0 then
        return array(select generate_series(1, depth));
    end if;
    te := array_fill(null::vector, array[n]);
    ce := te;
    cw := array_fill(0::double precision, array[n]);
    mx := array_fill('-Infinity'::double precision, array[n]);
    counted := array_fill(0, array[n]);
    cur := cw;
    chunk := greatest(3 * depth, 16);

    for t in 2..depth loop
        best := null;
        best_score := '-Infinity';
        old := cardinality(active);
        i := 0;
        loop
            -- The next candidate: an item taken in whose last score could still
            -- beat the best so far, else the next by bound if its bound could.
            i := i + 1;
            if i <= old then
                c := active[i];
                continue when cur[c] < best_score;  -- (ties are decided below)
            else
                exit when head > n or bounds[head] < best_score or (bounds[head] = best_score
                    and (relevance[head] < relevance[best] or (relevance[head] = relevance[best] and positions[head] > positions[best])));
                c := head;
                head := head + 1;
                active := active || c;
                if fetched < c then
                    for got in select fetched + x.k as i, v.embedding::vector as t,
                                      case when collab_weight > 0 then v.collab end as c,
                                      case when collab_weight > 0 and v.collab is not null
                                           then collab_weight * v.support / (v.support + collab_shrink) else 0 end as w
                               from unnest(item_ids[fetched + 1 : fetched + chunk]) with ordinality as x(id, k)
                               join rerankdb.item_rank v on v.item_id = x.id loop
                        te[got.i] := got.t;
                        ce[got.i] := got.c;
                        cw[got.i] := got.w;
                    end loop;
                    fetched := fetched + chunk;
                end if;
            end if;
            -- Its score with every pick.
            tc := te[c];
            cc := ce[c];
            wc := cw[c];
            m := mx[c];
            foreach p in array picks[counted[c] + 1 : t - 1] loop
                m := greatest(m, case when cc is not null and ce[p] is not null
                                      then (1 - wc) * coalesce(-(tc <#> te[p]), 0) - wc * (cc <#> ce[p])
                                      else coalesce(-(tc <#> te[p]), 0) end);
            end loop;
            mx[c] := m;
            counted[c] := t - 1;
            cur[c] := (1 - lam) * relevance[c] - lam * m;
            if best is null or cur[c] > best_score or (cur[c] = best_score
                and (relevance[c] > relevance[best] or (relevance[c] = relevance[best] and positions[c] < positions[best]))) then
                best := c;
                best_score := cur[c];
            end if;
        end loop;
        picks := picks || best;
        active := array_remove(active, best);
    end loop;
    return picks;
end
$fn$;
