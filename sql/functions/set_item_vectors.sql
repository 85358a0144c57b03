-- rerankdb.set_item_vectors(item_ids, embeddings): bring your own item
-- embeddings, for roles that may not write rerankdb.item_vectors directly.
--
-- Input   item_ids    items that exist in rerankdb.items, each once
--         embeddings  one vector of the installed dimension per id, not zero
-- Output  rows written (inserted or replaced).  Stored unit length.  The
--         items leave the worker's embedding queue (rerankdb.item_queue): the
--         vector given is the item's until its content changes (which queues
--         it again), so a worker draining the queue later does not replace it
--         with a text embedding (revision 0008; before, it did).  The
--         vector records the SHA-256 of the text it stands for, and no
--         model (revision 0013: on Citus the worker finds changed texts by
--         it).  On Citus,
--         where item_vectors has no triggers (a reference table's trigger
--         cannot write another table), it also writes the vectors' copies in
--         rerankdb.item_rank and makes the interactions waiting for them due
--         (revision 0013; on one node the triggers do both).
-- Edge    lengths differ, a NULL id or vector, a repeated id: error 22023;
--         an unknown item: error 23503 naming up to five; a wrong dimension
--         or a zero vector: pgvector's / normalize_embedding's error.  Any
--         error writes nothing.
create or replace function rerankdb.set_item_vectors(item_ids bigint[], embeddings vector[])
returns bigint
language plpgsql volatile
security definer
set search_path = pg_catalog, public
as $fn$
declare
    n bigint;
    unknown text;
begin
    perform rerankdb._check_vector_arguments('set_item_vectors', item_ids, embeddings);
    select string_agg(x.id::text, ', ' order by x.id) into unknown
    from (
        select u.id from unnest(item_ids) as u(id)
        where not exists (select 1 from rerankdb.items i where i.item_id = u.id)
        order by u.id limit 5
    ) x;
    if unknown is not null then
        raise exception 'rerankdb.set_item_vectors: item vectors need their items first; unknown item_id(s): %', unknown
            using errcode = '23503', hint = 'insert the items into rerankdb.items first';
    end if;
    insert into rerankdb.item_vectors as v (item_id, embedding, content_sha256)
    select x.id, x.e, sha256(convert_to(i.content, 'UTF8'))
    from unnest(item_ids, embeddings) as x(id, e)
    join rerankdb.items i on i.item_id = x.id
    order by x.id
    on conflict (item_id) do update
        set embedding = excluded.embedding, content_sha256 = excluded.content_sha256, model = null,
            updated_at = excluded.updated_at;
    get diagnostics n = row_count;
    if not exists (select 1 from pg_trigger t where t.tgrelid = 'rerankdb.item_vectors'::regclass
                   and t.tgname = 'item_vectors_sync_rank') then
        insert into rerankdb.item_rank as r (item_id, embedding)
        select v.item_id, v.embedding from rerankdb.item_vectors v
        where v.item_id = any(item_ids)
        order by v.item_id
        on conflict (item_id) do update set embedding = excluded.embedding;
        update rerankdb.interaction_queue q set deferred = false
        where q.deferred and q.item_id = any(item_ids);
    end if;
    delete from rerankdb.item_queue q where q.item_id = any(item_ids);
    return n;
end
$fn$;
