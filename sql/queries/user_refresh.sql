-- Statements of rerankdb/user_refresh.py: folding queued interactions into
-- user states and vectors, and rebuilding users from the log.
--
-- Exactly once: interactions are claimed from interaction_queue with FOR
-- UPDATE SKIP LOCKED, and their queue rows are deleted in the same
-- transaction that writes the states and vectors they account for.
-- user_state rows are locked in user_id order.  Loaded once by
-- rerankdb.sqlfiles.queries("user_refresh"); each "-- name:" starts a statement.

-- name: due_partitions
-- The partitions of users (ranges of hashint8(user_id), rerankdb/partitions.py)
-- with interactions due, by their bounds: one index probe each.  One node.
select p.n - 1
from unnest(%(lower)s::int[], %(upper)s::int[]) with ordinality as p(lower, upper, n)
where exists (select 1 from rerankdb.interaction_queue q
              where hashint8(q.user_id) between p.lower and p.upper
                and not q.deferred and q.not_before <= clock_timestamp())

-- name: due_hashes
-- On Citus (where the probes above would each be a query of every shard): the
-- partitions of the oldest due interactions, by the hash of their users.
select hashint8(q.user_id)
from rerankdb.interaction_queue q
where not q.deferred and q.not_before <= clock_timestamp()
order by q.interaction_id
limit %(limit)s

-- name: users_of_partition
-- On Citus: the users of one partition with the oldest due interactions (the
-- users a claim then names, so that Citus sends it to their one shard).
select q.user_id
from rerankdb.interaction_queue q
where hashint8(q.user_id) between %(lower)s and %(upper)s
  and not q.deferred and q.not_before <= clock_timestamp()
order by q.interaction_id
limit %(limit)s

-- name: try_lock_partition
-- A partition of users for this fold transaction alone: a second worker takes
-- another (without waiting), so two folds never share a user and never wait
-- for each other's user_state locks.  The key is the queue's oid and the
-- partition (the fold lock is user_state's: another key).  On Citus it is
-- taken on the coordinator, where every worker connects.
select pg_try_advisory_xact_lock('rerankdb.interaction_queue'::regclass::oid::integer, %(part)s)

-- name: claim_interactions
-- Due interactions of one partition of users, oldest first, with the weight
-- they fold with (their own, else their kind's), their context as far as the
-- encoder reads it (%(max_chars)s characters: a 10 MB context is not sent),
-- their time in epoch seconds and how often they failed before.  Set-aside
-- rows wait for their not_before.  One node.
select q.interaction_id, i.user_id, coalesce(i.weight, k.weight)::float8, left(i.context, %(max_chars)s),
       extract(epoch from i.occurred_at)::float8, q.item_id, q.attempts
from rerankdb.interaction_queue q
join rerankdb.interactions i on i.interaction_id = q.interaction_id and i.user_id = q.user_id
join rerankdb.interaction_kinds k on k.kind = i.kind
where hashint8(q.user_id) between %(lower)s and %(upper)s
  and not q.deferred and q.not_before <= clock_timestamp()
order by q.interaction_id
limit %(limit)s
for update of q skip locked

-- name: claim_interactions_of_users
-- The same on Citus, for the users of one partition (users_of_partition):
-- Citus runs FOR UPDATE only on one shard, and prunes to it by user_id
-- (named for both tables: it prunes each).
select q.interaction_id, i.user_id, coalesce(i.weight, k.weight)::float8, left(i.context, %(max_chars)s),
       extract(epoch from i.occurred_at)::float8, q.item_id, q.attempts
from rerankdb.interaction_queue q
join rerankdb.interactions i on i.interaction_id = q.interaction_id and i.user_id = q.user_id
join rerankdb.interaction_kinds k on k.kind = i.kind
where q.user_id = any(%(users)s::bigint[]) and i.user_id = any(%(users)s::bigint[])
  and not q.deferred and q.not_before <= clock_timestamp()
order by q.interaction_id
limit %(limit)s
for update of q skip locked

-- name: claim_interactions_by_id
-- The same, for given interactions (a failed batch, folded again in parts).
select q.interaction_id, i.user_id, coalesce(i.weight, k.weight)::float8, left(i.context, %(max_chars)s),
       extract(epoch from i.occurred_at)::float8, q.item_id, q.attempts
from rerankdb.interaction_queue q
join rerankdb.interactions i on i.interaction_id = q.interaction_id and i.user_id = q.user_id
join rerankdb.interaction_kinds k on k.kind = i.kind
where q.interaction_id = any(%(ids)s::bigint[])
  and q.user_id = any(%(users)s::bigint[]) and i.user_id = any(%(users)s::bigint[])
  and not q.deferred and q.not_before <= clock_timestamp()
order by q.interaction_id
for update of q skip locked

-- name: try_begin_batch
-- begin_batch and batch_settings for a REPEATABLE READ rebuild: its snapshot
-- must not predate a training or tuning that commits while it waits, so it
-- does not wait for the lock (false: the caller retries later).
select pg_try_advisory_xact_lock_shared('rerankdb.user_state'::regclass::oid::integer, 1),
       extract(epoch from now())::float8, extract(epoch from s.future_tolerance)::float8,
       extract(epoch from s.half_life)::float8, extract(epoch from s.short_half_life)::float8
from rerankdb.settings s

-- name: begin_batch
-- First in every fold and rebuild transaction: the fold lock, shared (a
-- training or tuning takes it exclusively, sql/queries/train.sql, to switch
-- the collaborative space or the half-lives of every user at once; the key is
-- user_state's oid: one per database).
select pg_advisory_xact_lock_shared('rerankdb.user_state'::regclass::oid::integer, 1)

-- name: batch_settings
-- Second, in its own statement so that its snapshot follows the lock: the
-- database's now() and tolerated clock skew in epoch seconds, which every
-- row's time is checked against (rows written before revision 0005's door,
-- rerankdb.check_interaction, may be infinite or in the future), and the
-- half-lives the batch folds with (NULL half_life: no decay).
select extract(epoch from now())::float8, extract(epoch from s.future_tolerance)::float8,
       extract(epoch from s.half_life)::float8, extract(epoch from s.short_half_life)::float8
from rerankdb.settings s

-- name: drop_collab_of_user
-- A user the training could not rebuild: no vector of the old space is kept.
with s as (
    update rerankdb.user_state set collab_sum = null where user_id = %(user)s
)
update rerankdb.user_vectors set collab = null where user_id = %(user)s

-- name: set_aside
-- Interactions that could not be folded: their error, one more attempt, and
-- when to try again (now() + their delay, computed by the caller: Citus
-- refuses now() beside a column in an UPDATE).  They block nothing meanwhile.
update rerankdb.interaction_queue q
   set attempts = q.attempts + 1, last_error = f.error, not_before = f.not_before
  from unnest(%(ids)s::bigint[], %(users)s::bigint[], %(errors)s::text[], %(not_before)s::timestamptz[])
       as f(id, user_id, error, not_before)
 where q.interaction_id = f.id and q.user_id = f.user_id and q.user_id = any(%(users)s::bigint[])

-- name: now
select now()

-- name: set_aside_unqueued
-- A rebuild found a row it cannot fold that is not queued (it was folded
-- before the checks existed, or dequeued): queue it as set aside.
insert into rerankdb.interaction_queue as q (interaction_id, item_id, user_id, attempts, last_error, not_before)
select i.interaction_id, i.item_id, i.user_id, 1, f.error, now() + interval '5 seconds'
from unnest(%(ids)s::bigint[], %(users)s::bigint[], %(errors)s::text[]) as f(id, user_id, error)
join rerankdb.interactions i on i.interaction_id = f.id and i.user_id = f.user_id
where i.user_id = any(%(users)s::bigint[])
on conflict (interaction_id, user_id) do update
   set attempts = q.attempts + 1, last_error = excluded.last_error, not_before = excluded.not_before

-- name: defer_interactions
-- The item has no vector yet: keep the interaction until it has.
update rerankdb.interaction_queue set deferred = true
where interaction_id = any(%(ids)s::bigint[]) and user_id = any(%(users)s::bigint[])

-- name: dequeue_interactions
-- (user_id: on Citus, the statement goes to the users' shard alone)
delete from rerankdb.interaction_queue
where interaction_id = any(%(ids)s::bigint[]) and user_id = any(%(users)s::bigint[])

-- name: mark_user_refresh
update rerankdb.worker_state set last_user_refresh_at = now()

-- name: release_deferred
-- Deferred interactions whose item now has a vector become due again.
update rerankdb.interaction_queue q set deferred = false
where q.deferred and exists (select 1 from rerankdb.item_vectors v where v.item_id = q.item_id)

-- name: repeatable_read
-- A rebuild reads the queue and the log in one snapshot: nothing counted twice or missed.
set transaction isolation level repeatable read

-- name: lock_queued_interactions_of_users
select q.interaction_id
from rerankdb.interaction_queue q
where q.user_id = any(%(users)s::bigint[])
for update of q

-- name: drop_orphans_of_users
-- Queue rows of these users whose row of the log is gone (the queue has no
-- foreign key since revision 0016): a rebuild queues rows it read in its
-- snapshot (requeue_deferred, set_aside_unqueued), which another transaction
-- may delete meanwhile.  Rare, and nothing would ever claim them.
delete from rerankdb.interaction_queue q
where q.user_id = any(%(users)s::bigint[])
  and not exists (select 1 from rerankdb.interactions i
                  where i.interaction_id = q.interaction_id and i.user_id = q.user_id
                    and i.user_id = any(%(users)s::bigint[]))

-- name: interactions_of_users
-- The whole log of some users, as claim_interactions returns it, but for the
-- rows set aside (the incremental state does not count them either; they are
-- counted when their retry folds them).
select i.interaction_id, i.user_id, coalesce(i.weight, k.weight)::float8, left(i.context, %(max_chars)s),
       extract(epoch from i.occurred_at)::float8, i.item_id, 0
from rerankdb.interactions i
join rerankdb.interaction_kinds k on k.kind = i.kind
where i.user_id = any(%(users)s::bigint[])
  and not exists (select 1 from rerankdb.interaction_queue q
                  where q.interaction_id = i.interaction_id and q.user_id = i.user_id and q.attempts > 0)

-- name: requeue_deferred
-- Counted by nobody: their item lost its vector.  Queued as deferred.
insert into rerankdb.interaction_queue (interaction_id, item_id, user_id, deferred)
select i.interaction_id, i.item_id, i.user_id, true
from rerankdb.interactions i
where i.interaction_id = any(%(ids)s::bigint[]) and i.user_id = any(%(users)s::bigint[])
on conflict (interaction_id, user_id) do update set deferred = true

-- name: users_to_rebuild
-- Users whose log changed after they were folded (deleted or updated rows),
-- oldest request first; not locked: two workers may pick the same user, and
-- the states' locks serialize them.
select user_id from rerankdb.user_rebuild_queue
where not_before <= clock_timestamp()
order by enqueued_at, user_id
limit %(limit)s

-- name: rebuild_requests
-- The requests of some users as they are now: read before their log, so that
-- a change committed after it (which renews enqueued_at) is not dequeued.
select user_id, enqueued_at from rerankdb.user_rebuild_queue where user_id = any(%(users)s::bigint[])

-- name: dequeue_rebuild_requests
delete from rerankdb.user_rebuild_queue q
using unnest(%(users)s::bigint[], %(enqueued)s::timestamptz[]) as f(id, at)
where q.user_id = f.id and q.enqueued_at = f.at

-- name: rebuild_attempts
select attempts from rerankdb.user_rebuild_queue where user_id = %(user)s

-- name: postpone_rebuild
-- A user whose rebuild failed: one more attempt, later, with the error.
update rerankdb.user_rebuild_queue
   set attempts = attempts + 1, last_error = %(error)s,
       not_before = now() + make_interval(secs => %(delay)s)
 where user_id = %(user)s

-- name: all_users
select user_id from rerankdb.interactions
union
select user_id from rerankdb.user_state
union
select user_id from rerankdb.user_snapshot
order by 1

-- name: mark_rebuild
-- After every user was rebuilt with the half-lives read at its start.
update rerankdb.worker_state
   set last_rebuild_at = now(), states_half_life = %(half_life)s, states_short_half_life = %(short_half_life)s

-- name: half_lives
-- The half-lives in settings, and whether every user state was last rebuilt with them.
select s.half_life, s.short_half_life,
       s.half_life is not distinct from w.states_half_life
       and s.short_half_life is not distinct from w.states_short_half_life
from rerankdb.settings s
cross join rerankdb.worker_state w

-- name: exclusive_fold_lock
-- No fold or rebuild runs while this transaction switches every user at once.
select pg_advisory_xact_lock('rerankdb.user_state'::regclass::oid::integer, 1)

-- name: refresh_centers
select rerankdb.refresh_centers()
