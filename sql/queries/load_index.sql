-- Statements of rerankdb/load_index.py: the text HNSW index during a load (its
-- state, the one-build-at-a-time lock, drop and build).  Loaded once by
-- rerankdb.sqlfiles.queries("load_index"); each "-- name:" starts a statement.

-- name: text_index_state
select i.indisvalid
from pg_index i join pg_class c on c.oid = i.indexrelid
where c.oid = to_regclass('rerankdb.item_vectors_embedding_hnsw')

-- name: try_lock_index_build
-- One index rebuild at a time (two loads would drop each other's build).  Tried,
-- not waited for inside the statement: a waiting statement holds a snapshot,
-- which the other load's CREATE INDEX CONCURRENTLY waits for (a deadlock).
select pg_try_advisory_lock(hashtext('rerankdb.item_vectors_embedding_hnsw'))

-- name: unlock_index_build
select pg_advisory_unlock(hashtext('rerankdb.item_vectors_embedding_hnsw'))

-- name: drop_text_index
drop index concurrently if exists rerankdb.item_vectors_embedding_hnsw

-- name: build_settings
select set_config('maintenance_work_mem', %(memory)s, false),
       set_config('max_parallel_maintenance_workers', %(workers)s, false)

-- name: storage
select storage from rerankdb.config

-- name: create_text_index_vector
-- As revisions 0001 and 0008 build it (sql/revisions/0001/dimension.sql, 0008/storage.sql).
create index concurrently if not exists item_vectors_embedding_hnsw on rerankdb.item_vectors
    using hnsw (embedding vector_ip_ops)

-- name: create_text_index_halfvec
create index concurrently if not exists item_vectors_embedding_hnsw on rerankdb.item_vectors
    using hnsw (embedding halfvec_ip_ops)
