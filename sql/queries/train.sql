-- Statements of rerankdb/train.py: collaborative item vectors from the log.
-- Loaded once by rerankdb.sqlfiles.queries("train"); each "-- name:" starts
-- a statement.

-- name: exclusive_fold_lock
-- Waits for the folds and rebuilds in flight and holds new ones off until the
-- training commits (they take it shared: sql/queries/user_refresh.sql).
select pg_advisory_xact_lock('rerankdb.user_state'::regclass::oid::integer, 1)

-- name: collab_dim
select collab_dim from rerankdb.settings

-- name: positive_pairs
-- (user, item) of every positive interaction (weight > 0) with an item that
-- has a text vector (so it has a row in item_rank to hold its collab vector).
select i.user_id, i.item_id
from rerankdb.interactions i
join rerankdb.interaction_kinds kd on kd.kind = i.kind
where coalesce(i.weight, kd.weight) > 0
  and exists (select 1 from rerankdb.item_vectors v where v.item_id = i.item_id)

-- name: set_collab
-- The trained vectors as arrays, not a temporary stage: on Citus item_rank
-- is a reference table, which a statement may not update from a local table.
update rerankdb.item_rank r
   set collab = c.collab, support = c.support
  from unnest(%(items)s::bigint[], %(vectors)s::vector[], %(supports)s::int[]) as c(item_id, collab, support)
 where r.item_id = c.item_id

-- name: clear_untrained_collab
-- Items that were not in this training lose their old vector.
update rerankdb.item_rank r
   set collab = null, support = null
 where r.collab is not null
   and not (r.item_id = any(%(items)s::bigint[]))

-- name: mark_trained
update rerankdb.settings set trained_at = now()

-- name: refresh_centers
select rerankdb.refresh_centers()

-- name: refresh_collab_keys
-- After the training has committed: the collaborative HNSW index rebuilt in
-- bulk beside the old one and swapped in (sql/functions/refresh_collab_keys.sql).
select rerankdb.refresh_collab_keys()

-- name: refresh_hybrid_keys
-- Then the one index by the hybrid score, built the same way
-- (sql/functions/refresh_hybrid_keys.sql).
select rerankdb.refresh_hybrid_keys()
