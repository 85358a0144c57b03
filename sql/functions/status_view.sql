-- rerankdb.status: one row describing the worker's backlog and health.
--
--   pending_items          items waiting to be embedded (never failed)
--   failed_items           items whose text could not be embedded yet; see
--                          rerankdb.item_queue.last_error, retried with backoff
--                          (set-aside items not counted)
--   pending_interactions   interactions waiting to be folded into user vectors
--   deferred_interactions  interactions whose item has no vector yet
--   failed_interactions    interactions set aside: they could not be folded
--                          (rerankdb.interaction_queue.last_error says why);
--                          retried with backoff, never blocking the others
--   users_to_rebuild       users whose interactions were deleted or changed,
--                          waiting for the worker to rebuild their vectors
--   interaction_lag        age of the oldest pending interaction (NULL: none)
--   item_lag               age of the oldest queued item, set-aside items
--                          left out (NULL: none)
--   last_*_at              last successful refresh of each kind
--   model, dim             the encoder that made the item vectors; the dimension
--   last_interaction_error the newest error of a set-aside interaction
--   last_compact_at        the last compaction of the log (revision 0009; NULL: never)
--   compacted_before       the newest cutoff a compaction used: interactions
--                          older than it are in user snapshots, not in the log
--   set_aside_items        items set aside for good (revision 0010): their
--                          content is empty or blank, nothing to embed; not
--                          retried (item_queue.not_before is 'infinity') until
--                          their content changes, which queues them afresh
create or replace view rerankdb.status as
select
    (select count(*) from rerankdb.item_queue where attempts = 0) as pending_items,
    (select count(*) from rerankdb.item_queue where attempts > 0 and not_before < 'infinity') as failed_items,
    (select count(*) from rerankdb.interaction_queue where not deferred and attempts = 0) as pending_interactions,
    (select count(*) from rerankdb.interaction_queue where deferred) as deferred_interactions,
    (select now() - min(enqueued_at) from rerankdb.interaction_queue where not deferred and attempts = 0)
        as interaction_lag,
    (select now() - min(enqueued_at) from rerankdb.item_queue where not_before < 'infinity') as item_lag,
    w.last_item_refresh_at,
    w.last_user_refresh_at,
    w.last_rebuild_at,
    w.model,
    c.dim,
    (select count(*) from rerankdb.interaction_queue where attempts > 0) as failed_interactions,
    (select count(*) from rerankdb.user_rebuild_queue) as users_to_rebuild,
    (select q.last_error from rerankdb.interaction_queue q
     where q.attempts > 0 order by q.interaction_id desc limit 1) as last_interaction_error,
    w.last_compact_at,
    w.compacted_before,
    (select count(*) from rerankdb.item_queue where not_before = 'infinity') as set_aside_items
from rerankdb.worker_state w
cross join rerankdb.config c;
