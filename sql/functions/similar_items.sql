-- rerankdb.similar_items(source_item_id, k): the k items nearest to an item,
-- through the HNSW indexes (rerankdb.nearest), excluding the item itself:
-- rerank's hybrid score with the item's own vectors as the query.  (The input is
-- not called item_id because PostgreSQL forbids an input and an output
-- parameter of the same name; call it positionally.)
--
-- Output  (item_id, score, rank) like rerankdb.rerank: the score a user whose
--         vectors are the item's gets.  The text cosine, or (1 - w) * text + w
--         * collaborative cosine where both items have a collaborative vector
--         (w of the scored item, as in rerank); then (1 - s) * that + s *
--         sequence cosine where both have a sequence vector
--         (settings.sequence_weight s; revision 0014).  Highest first, ties by
--         item_id; rank counts from 1.
-- NULL    k has a default (10), so k NULL is error 22023, as for every option
--         of rerankdb's functions whose default is not NULL.  A NULL
--         source_item_id is an unknown item.
-- Edge    an unknown item or one without a vector: no rows.  k = 0: no rows.
--         k NULL or < 0: error 22023.  Approximate (HNSW).
-- Security: runs with its owner's rights (security definer, search_path
-- pinned, names schema-qualified), so callers need EXECUTE on it and no
-- access to the tables it reads or writes (README, "Roles").
create or replace function rerankdb.similar_items(
    source_item_id bigint,
    k integer default 10
) returns table (item_id bigint, score double precision, rank integer)
language plpgsql stable
security definer
set search_path = pg_catalog, public
as $fn$
#variable_conflict use_column
begin
    if k is null or k < 0 then
        raise exception 'rerankdb.similar_items: k must be >= 0, got %', coalesce(k::text, 'NULL')
            using errcode = '22023';
    end if;
    return query
        select n.item_id, n.score, n.rank
        from rerankdb.nearest(
            -- (::vector: the text vector is halfvec where installed so, revision 0008)
            (select r.embedding::vector from rerankdb.item_rank r where r.item_id = similar_items.source_item_id),
            (select r.collab from rerankdb.item_rank r where r.item_id = similar_items.source_item_id),
            (select r.seq from rerankdb.item_rank r where r.item_id = similar_items.source_item_id),
            k,
            null,
            similar_items.source_item_id
        ) n;
end
$fn$;
