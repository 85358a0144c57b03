-- rerankdb.recommend(user_id, k, exclude_seen): the k items of the whole
-- catalog that score highest for the user, found through the HNSW indexes
-- (no candidate list needed; rerankdb.nearest).
--
-- Output  (item_id, score, rank) like rerankdb.rerank: score is rerank's
--         score (the text and collaborative query vectors, each
--         rerankdb.blend of the long-term and short-term vectors with the
--         space's settings, and the user's sequence vector), highest first,
--         ties by item_id; rank counts from 1.  One HNSW index ranks by that
--         score where it is built (rerankdb.refresh_hybrid_keys), else the
--         text and collaborative indexes find a pool that is scored exactly
--         (rerankdb.nearest).
-- exclude_seen (default true) leaves out every item the user has an
--         interaction with, and still returns k rows when k unseen items
--         exist (pgvector's iterative index scan; see rerankdb.nearest).
-- NULL    an option is NULL only where its default is: k and exclude_seen
--         have defaults (10, true), so NULL for either is error 22023 (the
--         message names it), as for every option of rerankdb's functions.
--         A NULL or unknown user_id is a cold start.
-- Edge    a user without a vector (cold start): no rows.  k = 0: no rows.
--         k NULL or < 0, exclude_seen NULL: error 22023.  Approximate (HNSW).
-- Security: runs with its owner's rights (security definer, search_path
-- pinned, names schema-qualified), so callers need EXECUTE on it and no
-- access to the tables it reads or writes (README, "Roles").
create or replace function rerankdb.recommend(
    user_id bigint,
    k integer default 10,
    exclude_seen boolean default true
) returns table (item_id bigint, score double precision, rank integer)
language plpgsql stable
security definer
set search_path = pg_catalog, public
as $fn$
#variable_conflict use_column
begin
    if k is null or k < 0 then
        raise exception 'rerankdb.recommend: k must be >= 0, got %', coalesce(k::text, 'NULL')
            using errcode = '22023';
    end if;
    if exclude_seen is null then
        raise exception 'rerankdb.recommend: exclude_seen must be true or false, got NULL' using errcode = '22023';
    end if;
    return query
        select n.item_id, n.score, n.rank
        from rerankdb.user_vectors u
        left join rerankdb.settings st on true
        cross join lateral rerankdb.nearest(
            rerankdb.blend(u.embedding, u.short_embedding, st.short_weight, st.text_center, st.text_centering),
            rerankdb.blend(u.collab, u.short_collab, st.collab_short_weight, st.collab_center, st.collab_centering),
            u.seq,
            k,
            case when exclude_seen then recommend.user_id end
        ) n
        where u.user_id = recommend.user_id
        order by n.rank;
end
$fn$;
