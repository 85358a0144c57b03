-- rerankdb.rerank_scored(user_id, candidates, base_scores, weight, k,
-- diversity, context_items, exclude_seen): blend the application's own
-- retriever scores (BM25, a vector search score, ...) with personalization.
--
-- Input   candidates   item ids, as for rerankdb.rerank
--         base_scores  one finite score per candidate (same length; higher is
--                      better; NULL counts as the lowest)
--         weight       share of personalization in [0, 1] (default 0.5):
--                      0 = the retriever's order, 1 = rerankdb.rerank's order
--         diversity, context_items, exclude_seen   as for rerankdb.rerank:
--                      context_items shape the personal score p; exclude_seen
--                      drops rows; diversity chooses the first k rows (100
--                      when k is NULL) by MMR on the blended score.
-- Score   (1 - weight) * b + weight * p, both in [0, 1]:
--           b = min-max normalized base score over the distinct candidates
--               (all equal: 1);
--           p = (rerankdb.rerank score + 1) / 2, the personal similarity.
--         A candidate without a personal score (cold user, item without a
--         vector) gets b alone.
-- Output  (item_id, score, rank), highest score first, ties by input
--         position; duplicates and NULL ids as in rerankdb.rerank.
-- NULL    an option may be NULL only where its default is (the rule of every
--         rerankdb function): k NULL (the default) returns every row;
--         context_items NULL (the default) is no context.  weight, diversity
--         and exclude_seen have defaults (0.5, 0, false): NULL for any is
--         error 22023, naming it.  A NULL base score counts as the lowest;
--         base_scores NULL is error 22023 (one score per candidate).
-- Edge    NULL or empty candidates: no rows.  Lengths differ, NaN or
--         infinite base score, weight outside [0, 1] or NULL, k < 0,
--         diversity outside [0, 1] or NULL, exclude_seen NULL: error 22023.
--         Any finite scores work, up to +-1.7e308.
-- Security: runs with its owner's rights (security definer, search_path
-- pinned, names schema-qualified), so callers need EXECUTE on it and no
-- access to the tables it reads or writes (README, "Roles").
create or replace function rerankdb.rerank_scored(
    user_id bigint,
    candidates bigint[],
    base_scores double precision[],
    weight double precision default 0.5,
    k integer default null,
    diversity double precision default 0,
    context_items bigint[] default null,
    exclude_seen boolean default false
) returns table (item_id bigint, score double precision, rank integer)
language plpgsql stable parallel safe
security definer
set search_path = pg_catalog, public
as $fn$
#variable_conflict use_column
declare
    ids bigint[];
    finals double precision[];
    use_collab boolean;
begin
    if weight is null or weight < 0 or weight > 1 then
        raise exception 'rerankdb.rerank_scored: weight must be in [0, 1], got %', coalesce(weight::text, 'NULL')
            using errcode = '22023';
    end if;
    if k < 0 then
        raise exception 'rerankdb.rerank_scored: k must be NULL or >= 0, got %', k using errcode = '22023';
    end if;
    if diversity is null or not (diversity >= 0 and diversity <= 1) then
        raise exception 'rerankdb.rerank_scored: diversity must be in [0, 1] (0: off), got %',
            coalesce(diversity::text, 'NULL') using errcode = '22023';
    end if;
    if exclude_seen is null then
        raise exception 'rerankdb.rerank_scored: exclude_seen must be true or false, got NULL' using errcode = '22023';
    end if;
    if candidates is null or cardinality(candidates) = 0 then
        return;
    end if;
    if base_scores is null or cardinality(base_scores) <> cardinality(candidates) then
        raise exception 'rerankdb.rerank_scored: base_scores must have one score per candidate '
                        '(% candidates, % scores)', cardinality(candidates), coalesce(cardinality(base_scores), 0)
            using errcode = '22023';
    end if;
    if exists (select 1 from unnest(base_scores) as b(v) where v in ('NaN', 'Infinity', '-Infinity')) then
        raise exception 'rerankdb.rerank_scored: base_scores must be finite numbers'
            using errcode = '22023';
    end if;

    if diversity > 0 then
        -- The blended order (this function with diversity 0), then MMR on it,
        -- the similarity in the personal score's space (rerankdb.diversify).
        select array_agg(r.item_id order by r.rank), array_agg(r.score order by r.rank) into ids, finals
        from rerankdb.rerank_scored(rerank_scored.user_id, candidates, base_scores, weight, null, 0,
                                    context_items, exclude_seen) r;
        select u.collab is not null into use_collab from rerankdb.user_vectors u where u.user_id = rerank_scored.user_id;
        return query
            select d.item_id, d.score, d.rank
            from rerankdb.diversify(ids, finals, diversity, coalesce(k, 100), coalesce(use_collab, false)) d
            order by d.rank
            limit k;
        return;
    end if;

    return query
        with base as (
            select distinct on (x.item_id) x.item_id, x.pos, x.b
            from unnest(candidates, base_scores) with ordinality as x(item_id, b, pos)
            where x.item_id is not null
            order by x.item_id, x.pos
        ), bounds as (
            select min(b) as lo, max(b) as hi from base
        ), blended as (
            select base.item_id, base.pos,
                   case when r.score is null then bn.v
                        else (1 - weight) * bn.v + weight * (r.score + 1) / 2
                   end as final
            from base
            cross join bounds
            cross join lateral (
                select case when base.b is null then 0.0
                            -- halves first: hi - lo of scores near +-1.7e308 would overflow
                            when bounds.hi > bounds.lo then (base.b / 2 - bounds.lo / 2) / (bounds.hi / 2 - bounds.lo / 2)
                            else 1.0
                       end as v
            ) bn
            join rerankdb.rerank(rerank_scored.user_id, candidates, null, 0, context_items, exclude_seen) r
              on r.item_id = base.item_id
        )
        select f.item_id, f.final, (row_number() over (order by f.final desc, f.pos))::integer
        from blended f
        order by f.final desc, f.pos
        limit k;
end
$fn$;
