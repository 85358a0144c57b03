-- rerankdb.rerank(user_id, candidates, k, diversity, context_items,
-- exclude_seen): personalize a candidate list.
--
-- Input   user_id     the user to personalize for (any bigint; unknown is fine)
--         candidates  item ids from the application's own retriever
--         k           return only the first k rows; NULL (default) = all
--         diversity   0 (default): off.  In (0, 1]: the first k rows (the
--                     first 100 when k is NULL) are chosen by MMR from all
--                     the scored candidates, each maximizing
--                     (1 - diversity) * score - diversity * max similarity to
--                     the rows above it (rerankdb.mmr, its bounds from the
--                     scoring's own read of each candidate); the rest follow
--                     by score.  score stays the relevance; rank is the order.
--                     0.3 gives "some diversity" (README, "Diversity").
--         context_items  what the user is looking at (a product page, a cart,
--                     the session's items), or NULL.  Their average vector
--                     (per space, centered as the user's; in the sequence
--                     space the average of their sequence vectors, revision
--                     0012) is mixed into the query vector with
--                     settings.context_items_weight; a user without a vector
--                     is ranked by the context alone, in every space.
--                     Items without a vector are ignored.
--         exclude_seen  false (default): keep every candidate.  true: drop the
--                     candidates the user has a positive interaction with
--                     (effective weight > 0).
-- Output  (item_id, score, rank), rank counting from 1.  score, in [-1, 1]:
--         where the user and the item both have a collaborative vector,
--         (1 - w) * text cosine + w * collaborative cosine, with the item's
--         w = collab_weight * support / (support + collab_shrink) (settings;
--         support = how many users the item's collaborative vector was
--         learned from);
--         otherwise the text cosine alone (an item nobody has interacted with
--         yet still ranks by its text).  Where the user and the item both
--         have a sequence vector (rerankdb.sequence_model, revision 0011), that
--         score is blended with the sequence cosine:
--         (1 - s) * score + s * sequence cosine, s = settings.sequence_weight
--         (a first-time visitor's sequence vector: the context's, above).
--         Each cosine is taken with the user's query vector of that space,
--         formed once per call by rerankdb.blend: the long-term and the
--         short-term (newest interest) vectors, each centered (minus
--         text_centering / collab_centering times the average user vector
--         of that space, settings.text_center / collab_center, refreshed by
--         rerankdb.refresh_centers at each training and rebuild), mixed
--         (1 - s) : s with s = settings.short_weight / collab_short_weight,
--         scaled to unit length.  No center yet (few users): no centering;
--         no short-term vector (vectors set by the app): the long-term one.
-- Order   * every distinct non-null candidate comes back exactly once; a
--           duplicate keeps its first position;
--         * scored candidates by score, highest first, ties by input position;
--         * then candidates without an item vector, in input order, score NULL;
--         * a user without a vector (cold start): all candidates in input
--           order, score NULL.  Never an error, never a lost row.
-- NULL    an option may be NULL only where its default is (the rule of every
--         rerankdb function): k NULL (the default) returns every row;
--         context_items NULL (the default) is no context.  diversity and
--         exclude_seen have defaults (0, false): NULL for either is error
--         22023, naming it.  A NULL or unknown user_id is a cold start.
-- Edge    NULL or empty candidates: no rows.  k = 0: no rows.  k < 0,
--         diversity outside [0, 1] or NULL, exclude_seen NULL: error 22023.
--         100,000 candidates work.
-- Vectors are stored unit length (rerankdb.normalize_embedding, and training
-- for collab), so cosine similarity is the inner product: -(a <#> b).  Item
-- vectors are read from rerankdb.item_rank, which holds both vectors of an
-- item in one row: one read per candidate.
-- Security: runs with its owner's rights (security definer, search_path
-- pinned, names schema-qualified), so callers need EXECUTE on it and no
-- access to the tables it reads or writes (README, "Roles").
create or replace function rerankdb.rerank(
    user_id bigint,
    candidates bigint[],
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
    user_embedding vector;
    user_collab vector;
    short_embedding vector;
    short_collab vector;
    text_short real;
    collab_short real;
    w double precision;
    shrink double precision;
    text_center vector;
    text_share real;
    collab_center vector;
    collab_share real;
    context_share real;
    user_seq vector;
    seq_share double precision;
    context_embedding vector;
    context_collab vector;
    context_seq vector;
    scored bigint[];
    relevance double precision[];
    unscored bigint[];
    -- With diversity: the scored candidates, the first first, the rest by their MMR
    -- bound; their input positions; those without a vector; the MMR picks.
    bounds double precision[];
    positions bigint[];
    unscored_positions bigint[];
    picks integer[];
begin
    if k < 0 then
        raise exception 'rerankdb.rerank: k must be NULL or >= 0, got %', k using errcode = '22023';
    end if;
    if diversity is null or not (diversity >= 0 and diversity <= 1) then
        raise exception 'rerankdb.rerank: diversity must be in [0, 1] (0: off), got %', coalesce(diversity::text, 'NULL')
            using errcode = '22023';
    end if;
    if exclude_seen is null then
        raise exception 'rerankdb.rerank: exclude_seen must be true or false, got NULL' using errcode = '22023';
    end if;
    if candidates is null or cardinality(candidates) = 0 then
        return;
    end if;

    -- Copies (subvector of the whole vector): a user row over 2 kB (a large
    -- dimension, a big collaborative vector) keeps its vectors in TOAST, and
    -- a TOAST pointer would be fetched again for every candidate (measured:
    -- 1.5x slower at 1000 candidates).
    -- (The short-term vectors are read once, by rerankdb.blend: no copy needed.)
    select subvector(u.embedding, 1, vector_dims(u.embedding)), subvector(u.collab, 1, vector_dims(u.collab)),
           u.short_embedding, u.short_collab, u.seq
    into user_embedding, user_collab, short_embedding, short_collab, user_seq
    from rerankdb.user_vectors u
    where u.user_id = rerank.user_id;

    select st.collab_weight, st.collab_shrink, st.text_center, st.text_centering,
           st.collab_center, st.collab_centering, st.short_weight, st.collab_short_weight,
           st.context_items_weight, st.sequence_weight
    into w, shrink, text_center, text_share, collab_center, collab_share, text_short, collab_short, context_share,
         seq_share
    from rerankdb.settings st;

    if context_items is not null and cardinality(context_items) > 0 and (user_embedding is null or context_share > 0) then
        -- The context's average vector per space (the collaborative and the
        -- sequence one from the context items that have one), centered as a
        -- user's would be.  The sequence space's: the items' own sequence
        -- vectors, which the model learned to be near the items that follow
        -- them (a first-time visitor has no sequence to run the model on).
        -- (::vector: item text vectors are halfvec where installed so, revision 0008.)
        select rerankdb.center(l2_normalize(avg(r.embedding::vector)), text_center, text_share),
               rerankdb.center(l2_normalize(avg(r.collab)), collab_center, collab_share),
               l2_normalize(avg(r.seq))
        into context_embedding, context_collab, context_seq
        from rerankdb.item_rank r
        where r.item_id = any(context_items);
    end if;

    if user_embedding is null and context_embedding is null then
        -- Cold start: keep the retriever's order; no item vector is read.
        return query
            select c.item_id, null::double precision, (row_number() over (order by c.pos))::integer
            from (
                select x.item_id, min(x.pos) as pos
                from unnest(candidates) with ordinality as x(item_id, pos)
                where x.item_id is not null
                  and not (exclude_seen and exists (  -- a positive interaction (inline: a function call per row cost 2x)
                      select 1 from rerankdb.interactions i
                      join rerankdb.interaction_kinds kd on kd.kind = i.kind
                      where i.user_id = rerank.user_id and i.item_id = x.item_id
                        and coalesce(i.weight, kd.weight) > 0))
                group by x.item_id
            ) c
            order by c.pos
            limit k;
        return;
    end if;

    -- The query vectors, once per call, not per candidate (rerankdb.blend;
    -- called only where it has work to do: a call costs a few us).
    if user_embedding is not null
       and ((text_center is not null and text_share > 0) or (short_embedding is not null and text_short > 0)) then
        user_embedding := rerankdb.blend(user_embedding, short_embedding, text_short, text_center, text_share);
    end if;
    if user_collab is not null and w > 0
       and ((collab_center is not null and collab_share > 0) or (short_collab is not null and collab_short > 0)) then
        user_collab := rerankdb.blend(user_collab, short_collab, collab_short, collab_center, collab_share);
    end if;
    if context_embedding is not null then
        -- normalize((1 - c) user + c context); the context alone for a user without a vector.
        -- (Its collaborative part only where the user has one too, or has no
        -- vector at all: a user's text-only score stays text only.)
        if user_embedding is null then
            user_embedding := context_embedding;
            user_collab := context_collab;
            user_seq := context_seq;
        else
            user_embedding := rerankdb.blend(user_embedding, context_embedding, context_share, null, 0);
            user_collab := rerankdb.blend(user_collab, context_collab, context_share, null, 0);
            user_seq := rerankdb.blend(user_seq, context_seq, context_share, null, 0);
        end if;
    end if;
    if user_collab is null or w = 0 then
        user_collab := null;  -- text only: skip the second product
    end if;
    if seq_share is null or seq_share <= 0 then
        user_seq := null;  -- no sequence space: skip its product
    end if;

    if diversity > 0 then
        -- One read: every candidate scored as below (the same expressions),
        -- with its vectors' similarity to the best one, MMR's bound
        -- (rerankdb.mmr reads the vectors of the few it takes in); the
        -- scored by bound, the best one first, those without a vector apart.
        with s as materialized (
            select b.item_id, b.pos, b.t, b.c, b.cw,
                   case when b.seq_cosine is not null then b.score + seq_share * (b.seq_cosine - b.score)
                        else b.score
                   end as score
            from (
            select c.item_id, c.pos,
                   v.embedding::vector as t,  -- (halfvec where installed so)
                   case when user_collab is not null then v.collab end as c,
                   case when user_collab is not null and v.collab is not null
                        then w * v.support / (v.support + shrink) else 0 end as cw,
                   case when user_collab is not null and v.collab is not null
                        then -(v.embedding <#> user_embedding)
                             + w * v.support / (v.support + shrink)
                               * (-(v.collab <#> user_collab) + (v.embedding <#> user_embedding))
                        else -(v.embedding <#> user_embedding)
                   end as score,
                   case when user_seq is not null and v.seq is not null then -(v.seq <#> user_seq) end as seq_cosine
            from (
                select distinct on (x.item_id) x.item_id, x.pos
                from unnest(candidates) with ordinality as x(item_id, pos)
                where x.item_id is not null
                  and not (exclude_seen and exists (  -- a positive interaction (inline: a function call per row cost 2x)
                      select 1 from rerankdb.interactions i
                      join rerankdb.interaction_kinds kd on kd.kind = i.kind
                      where i.user_id = rerank.user_id and i.item_id = x.item_id
                        and coalesce(i.weight, kd.weight) > 0))
                order by x.item_id, x.pos
            ) c
            left join rerankdb.item_rank v on v.item_id = c.item_id
            offset 0  -- computed once per row: the blend below names b.score twice
            ) b
        ), f as (
            select s.pos, s.t, s.c from s where s.score is not null order by s.score desc, s.pos limit 1
        )
        -- (One sort of the rows, which the aggregates take in that order: the
        -- first item, then by bound, ties to the plain order.)
        select array_agg(o.item_id) filter (where o.score is not null),
               array_agg(o.score) filter (where o.score is not null),
               array_agg(o.pos) filter (where o.score is not null),
               array_agg(o.bound) filter (where o.score is not null),
               array_agg(o.item_id) filter (where o.score is null),
               array_agg(o.pos) filter (where o.score is null)
        into scored, relevance, positions, bounds, unscored, unscored_positions
        from (
            select s.item_id, s.pos, s.score, s.pos is distinct from f.pos as later,
                   (1 - diversity) * s.score
                   - diversity * (case when s.c is not null and f.c is not null
                                       then (1 - s.cw) * coalesce(-(s.t <#> f.t), 0) - s.cw * (s.c <#> f.c)
                                       else coalesce(-(s.t <#> f.t), 0) end) as bound
            from s left join f on true
            order by later, bound desc, s.score desc, s.pos
        ) o;
        picks := rerankdb.mmr(scored, relevance, positions, bounds, case when user_collab is not null then w else 0 end,
                              shrink, diversity, coalesce(k, 100));
        return query
            select scored[x.i], relevance[x.i], x.r::integer
            from unnest(picks) with ordinality as x(i, r);
        if k is null or k > cardinality(picks) then
            -- The rest in the plain order, then those without a vector in input order.
            return query
                select y.item_id, y.score, y.rank::integer
                from (
                    select x.item_id, x.score, cardinality(picks) + row_number() over (order by x.score desc, x.pos) as rank
                    from unnest(scored, relevance, positions) with ordinality as x(item_id, score, pos, i)
                    where x.i <> all(picks)
                    union all
                    select x.item_id, null::double precision,
                           coalesce(cardinality(scored), 0) + row_number() over (order by x.pos)
                    from unnest(unscored, unscored_positions) as x(item_id, pos)
                ) y
                order by y.rank
                limit k - cardinality(picks);
        end if;
        return;
    end if;

    -- Distinct candidates in item_id order (first position kept), so that the
    -- index probes and heap reads below walk the table in ascending order.
    return query
        select s.item_id, s.score, (row_number() over (order by s.score desc nulls last, s.pos))::integer
        from (
            select b.item_id, b.pos,
                   case when b.seq_cosine is not null then b.score + seq_share * (b.seq_cosine - b.score)
                        else b.score
                   end as score
            from (
            select c.item_id, c.pos,
                   case when user_collab is not null and v.collab is not null
                        then -(v.embedding <#> user_embedding)
                             + w * v.support / (v.support + shrink)
                               * (-(v.collab <#> user_collab) + (v.embedding <#> user_embedding))
                        else -(v.embedding <#> user_embedding)
                   end as score,
                   -- (No dimension check per row: every item's and user's sequence
                   -- vector comes from the newest model, switched in one transaction.)
                   case when user_seq is not null and v.seq is not null then -(v.seq <#> user_seq) end as seq_cosine
            from (
                select distinct on (x.item_id) x.item_id, x.pos
                from unnest(candidates) with ordinality as x(item_id, pos)
                where x.item_id is not null
                  and not (exclude_seen and exists (  -- a positive interaction (inline: a function call per row cost 2x)
                      select 1 from rerankdb.interactions i
                      join rerankdb.interaction_kinds kd on kd.kind = i.kind
                      where i.user_id = rerank.user_id and i.item_id = x.item_id
                        and coalesce(i.weight, kd.weight) > 0))
                order by x.item_id, x.pos
            ) c
            left join rerankdb.item_rank v on v.item_id = c.item_id
            offset 0  -- computed once per row: the blend below names b.score twice
            ) b
        ) s
        order by s.score desc nulls last, s.pos
        limit k;
end
$fn$;
