-- rerankdb.rerank(user_id, candidates, k): personalize a candidate list.
--
-- Input   user_id     the user to personalize for (any bigint; unknown is fine)
--         candidates  item ids from the application's own retriever
--         k           return only the first k rows; NULL (default) = all
-- Output  (item_id, score, rank): score is the cosine similarity of the
--         user's and the item's vectors in [-1, 1]; rank counts from 1.
-- Order   * every distinct non-null candidate comes back exactly once; a
--           duplicate keeps its first position;
--         * scored candidates by score, highest first, ties by input position;
--         * then candidates without an item vector, in input order, score NULL;
--         * a user without a vector (cold start): all candidates in input
--           order, score NULL.  Never an error, never a lost row.
-- Edge    NULL or empty candidates: no rows.  k = 0: no rows.  k < 0: error
--         22023.  100,000 candidates work.
-- Vectors are stored unit length (rerankdb.normalize_embedding), so cosine
-- similarity is the inner product: -(a <#> b).
create or replace function rerankdb.rerank(
    user_id bigint,
    candidates bigint[],
    k integer default null
) returns table (item_id bigint, score double precision, rank integer)
language plpgsql stable parallel safe
set search_path = pg_catalog, public
as $fn$
#variable_conflict use_column
declare
    user_embedding vector;
begin
    if k < 0 then
        raise exception 'rerankdb.rerank: k must be NULL or >= 0, got %', k using errcode = '22023';
    end if;
    if candidates is null or cardinality(candidates) = 0 then
        return;
    end if;

    select u.embedding into user_embedding
    from rerankdb.user_vectors u
    where u.user_id = rerank.user_id;

    if user_embedding is null then
        -- Cold start: keep the retriever's order; no item vector is read.
        return query
            select c.item_id, null::double precision, (row_number() over (order by c.pos))::integer
            from (
                select x.item_id, min(x.pos) as pos
                from unnest(candidates) with ordinality as x(item_id, pos)
                where x.item_id is not null
                group by x.item_id
            ) c
            order by c.pos
            limit k;
        return;
    end if;

    -- Distinct candidates in item_id order (first position kept), so that the
    -- index probes and heap reads below walk the table in ascending order.
    return query
        select s.item_id, s.score, (row_number() over (order by s.score desc nulls last, s.pos))::integer
        from (
            select c.item_id, c.pos, -(v.embedding <#> user_embedding) as score
            from (
                select distinct on (x.item_id) x.item_id, x.pos
                from unnest(candidates) with ordinality as x(item_id, pos)
                where x.item_id is not null
                order by x.item_id, x.pos
            ) c
            left join rerankdb.item_vectors v on v.item_id = c.item_id
        ) s
        order by s.score desc nulls last, s.pos
        limit k;
end
$fn$;
