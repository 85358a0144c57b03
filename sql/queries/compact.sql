-- Statements of rerankdb/compact.py: folding the log older than a cutoff into
-- user snapshots and deleting it (a bounded log).  Loaded once by
-- rerankdb.sqlfiles.queries("compact"); each "-- name:" starts a statement.

-- name: users_to_compact
-- Users with interactions before the cutoff, in id order, after a given user
-- (keyset pagination: compaction goes through the log in batches of users).
select distinct user_id from rerankdb.interactions
where occurred_at < %(before)s and user_id > %(after)s
order by user_id
limit %(limit)s

-- name: lock_states
-- The batch's users, locked as a fold or rebuild locks them (user_id order):
-- neither runs on these users until the compaction commits.
select user_id from rerankdb.user_state where user_id = any(%(users)s::bigint[]) order by user_id for update

-- name: rows_to_compact
-- The users' rows from before the cutoff, as claim_interactions returns rows,
-- each with whether the users' states count it (compactable): not queued (so
-- folded: not pending, deferred or set aside) and with an item vector (a
-- rebuild defers the others).  The rest stay in the log (the report's kept).
select i.interaction_id, i.user_id, coalesce(i.weight, k.weight)::float8, left(i.context, %(max_chars)s),
       extract(epoch from i.occurred_at)::float8, i.item_id, 0,
       not exists (select 1 from rerankdb.interaction_queue q
                   where q.interaction_id = i.interaction_id and q.user_id = i.user_id)
       and exists (select 1 from rerankdb.item_vectors v where v.item_id = i.item_id) as compactable
from rerankdb.interactions i
join rerankdb.interaction_kinds k on k.kind = i.kind
where i.user_id = any(%(users)s::bigint[])
  and i.occurred_at < %(before)s
order by i.interaction_id

-- name: rebuild_requests
-- The users already waiting for a rebuild before the compaction deletes rows
-- (the log's delete trigger queues every user whose rows go).
select user_id from rerankdb.user_rebuild_queue where user_id = any(%(users)s::bigint[]) for update

-- name: delete_rows
-- The rows rows_to_compact found compactable, but those the fold refused
-- (%(kept)s), by the same conditions: in the batch's REPEATABLE READ snapshot,
-- the same rows (the caller checks the count); no list of a million ids is sent.
-- (user_id: on Citus, the statement goes to the users' shard alone)
delete from rerankdb.interactions i
where i.user_id = any(%(users)s::bigint[])
  and i.occurred_at < %(before)s
  and i.interaction_id <> all(%(kept)s::bigint[])
  and not exists (select 1 from rerankdb.interaction_queue q
                  where q.interaction_id = i.interaction_id and q.user_id = i.user_id)
  and exists (select 1 from rerankdb.item_vectors v where v.item_id = i.item_id)

-- name: drop_own_rebuild_requests
-- The rows deleted are in the snapshot now: their users' states are right as
-- they are.  A user who was waiting for a rebuild before keeps waiting.
delete from rerankdb.user_rebuild_queue
where user_id = any(%(users)s::bigint[]) and user_id <> all(%(waiting)s::bigint[])

-- name: mark_compact
update rerankdb.worker_state
   set last_compact_at = now(), compacted_before = greatest(compacted_before, %(before)s)

-- name: older_than
-- Interactions before the cutoff: (all, with context text, of them not compactable yet).
select count(*),
       count(*) filter (where nullif(btrim(i.context), '') is not null),
       count(*) filter (where exists (select 1 from rerankdb.interaction_queue q
                                      where q.interaction_id = i.interaction_id and q.user_id = i.user_id)
                           or not exists (select 1 from rerankdb.item_vectors v where v.item_id = i.item_id))
from rerankdb.interactions i
where i.occurred_at < %(before)s
