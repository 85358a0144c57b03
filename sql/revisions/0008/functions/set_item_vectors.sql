-- rerankdb.set_item_vectors(item_ids, embeddings): bring your own item
-- embeddings, for roles that may not write rerankdb.item_vectors directly.
--
-- Input   item_ids    items that exist in rerankdb.items, each once
--         embeddings  one vector of the installed dimension per id, not zero
-- Output  rows written (inserted or replaced).  Stored unit length.  The
--         items leave the worker's embedding queue (rerankdb.item_queue): the
--         vector given is the item's until its content changes (which queues
--         it again), so a worker draining the queue later does not replace it
--         with a text embedding (revision 0008; before, it did).
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
    insert into rerankdb.item_vectors as v (item_id, embedding)
    select x.id, x.e from unnest(item_ids, embeddings) as x(id, e)
    order by x.id
    on conflict (item_id) do update set embedding = excluded.embedding, updated_at = now();
    get diagnostics n = row_count;
    delete from rerankdb.item_queue q where q.item_id = any(item_ids);
    return n;
end
$fn$;
