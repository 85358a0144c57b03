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
select items, item_vectors, user_vectors, interactions from rerankdb.counts()

-- name: worker_status
select pending_items, failed_items, pending_interactions, deferred_interactions,
       interaction_lag, item_lag, last_item_refresh_at, last_user_refresh_at,
       last_rebuild_at, model, failed_interactions, users_to_rebuild, last_interaction_error,
       last_compact_at, compacted_before
from rerankdb.status

-- name: workers
-- The worker processes seen in the last day, newest first (revision 0009).
select worker_id, host, pid, started_at, seen_at, now() - seen_at, interactions_folded, items_embedded,
       interactions_set_aside, items_failed, users_rebuilt, drains, busy_seconds, last_drain_seconds
from rerankdb.workers
order by seen_at desc

-- name: storage_and_text_index
-- (through jsonb: before revision 0008 there is no storage column)
select (select to_jsonb(c) ->> 'storage' from rerankdb.config c),
       (select case when i.indisvalid then 'valid' else 'invalid' end
        from pg_index i where i.indexrelid = to_regclass('rerankdb.item_vectors_embedding_hnsw'))

-- name: create_items_stage
create temp table _items (item_id bigint, content text, metadata jsonb) on commit drop

-- name: copy_items_stage
copy _items from stdin

-- name: upsert_items
-- An update that changes neither content nor metadata touches nothing.
insert into rerankdb.items as t (item_id, content, metadata)
select item_id, content, metadata from _items
on conflict (item_id) do update
   set content = excluded.content, metadata = excluded.metadata, updated_at = excluded.updated_at
 where (t.content, t.metadata) is distinct from (excluded.content, excluded.metadata)

-- name: delete_items
delete from rerankdb.items where item_id = any(%(items)s::bigint[])

-- name: now
select now()

-- name: copy_interactions
copy rerankdb.interactions (user_id, item_id, kind, weight, context, occurred_at) from stdin

-- name: set_item_vectors
-- Bring-your-own embeddings go through functions that check them (roles
-- without access to the vector tables may call them).
select rerankdb.set_item_vectors(%(ids)s, %(vectors)s::vector[])

-- name: set_user_vectors
select rerankdb.set_user_vectors(%(ids)s, %(vectors)s::vector[])

-- name: forget_user
select rerankdb.forget_user(%(user)s)

-- name: primary_lsn
-- Where the primary's WAL is now (Client.read_lag).
select pg_current_wal_lsn()

-- name: replica_lag
-- On the read server: bytes of the primary's WAL not replayed yet; 0 when the
-- read server is not a standby (it is a primary itself).
select case when pg_is_in_recovery()
            then greatest(pg_wal_lsn_diff(%(primary_lsn)s::pg_lsn, pg_last_wal_replay_lsn()), 0)
            else 0 end
