-- Statements of rerankdb/client.py, the thin Python query layer.  Reads call
-- the SQL functions (their contracts are in sql/functions/); writes stage
-- rows with COPY into a temporary table, then upsert them in one statement.
-- Loaded once by rerankdb.sqlfiles.queries("client"); each "-- name:" starts
-- a statement.

-- name: dimension
select rerankdb.dimension()

-- name: kinds
select kind, weight from rerankdb.interaction_kinds

-- name: counts
select (select count(*) from rerankdb.items),
       (select count(*) from rerankdb.item_vectors),
       (select count(*) from rerankdb.user_vectors),
       (select count(*) from rerankdb.interactions)

-- name: worker_status
select pending_items, failed_items, pending_interactions, deferred_interactions,
       interaction_lag, item_lag, last_item_refresh_at, last_user_refresh_at,
       last_rebuild_at, model
from rerankdb.status

-- name: create_items_stage
create temp table _items (item_id bigint, content text, metadata jsonb) on commit drop

-- name: copy_items_stage
copy _items from stdin

-- name: upsert_items
-- An update that changes neither content nor metadata touches nothing.
insert into rerankdb.items as t (item_id, content, metadata)
select item_id, content, metadata from _items
on conflict (item_id) do update
   set content = excluded.content, metadata = excluded.metadata, updated_at = now()
 where (t.content, t.metadata) is distinct from (excluded.content, excluded.metadata)

-- name: delete_items
delete from rerankdb.items where item_id = any(%(items)s::bigint[])

-- name: now
select now()

-- name: copy_interactions
copy rerankdb.interactions (user_id, item_id, kind, weight, context, occurred_at) from stdin

-- name: create_vectors_stage
create temp table _vectors (id bigint, embedding vector) on commit drop

-- name: copy_vectors_stage
copy _vectors from stdin with (format binary)

-- name: unknown_staged_items
select s.id from _vectors s left join rerankdb.items i on i.item_id = s.id where i.item_id is null limit 5

-- name: upsert_item_vectors
insert into rerankdb.item_vectors (item_id, embedding)
select id, embedding from _vectors
on conflict (item_id) do update set embedding = excluded.embedding, updated_at = now()

-- name: upsert_user_vectors
insert into rerankdb.user_vectors (user_id, embedding)
select id, embedding from _vectors
on conflict (user_id) do update set embedding = excluded.embedding, updated_at = now()

-- name: rerank
select * from rerankdb.rerank(%(user)s, %(candidates)s, %(k)s)

-- name: rerank_scored
select * from rerankdb.rerank_scored(%(user)s, %(candidates)s, %(scores)s::float8[], %(weight)s, %(k)s)

-- name: recommend
select * from rerankdb.recommend(%(user)s, %(k)s, %(exclude_seen)s)

-- name: similar_items
select * from rerankdb.similar_items(%(item)s, %(k)s)
