-- Statements of rerankdb/sequence_space.py: the sequence model and the
-- items' and users' sequence vectors.  Loaded once by
-- rerankdb.sqlfiles.queries("sequence_space"); each "-- name:" starts a
-- statement.

-- name: current_version
-- The model the worker runs: the newest.  (database, port, version,
-- trained_at) name it in the worker's cache, whatever the database.
select current_database(), coalesce(inet_server_port(), 0), version, trained_at
from rerankdb.sequence_model
order by version desc
limit 1

-- name: model
select items, weights from rerankdb.sequence_model where version = %(version)s

-- name: positive_sequences
-- Every user's positive interactions (effective weight > 0) with an item
-- that has a vector, oldest first: what the model trains on.  Rows a fold
-- would refuse (a time in the future or not finite) are left out.
select i.user_id, i.item_id
from rerankdb.interactions i
join rerankdb.interaction_kinds kd on kd.kind = i.kind
where coalesce(i.weight, kd.weight) > 0
  and isfinite(i.occurred_at)
  and i.occurred_at <= now() + (select future_tolerance from rerankdb.settings)
  and exists (select 1 from rerankdb.item_rank r where r.item_id = i.item_id)
order by i.user_id, i.occurred_at, i.interaction_id

-- name: catalog_text
-- Every item rerank can score, with its text vector: the model's items.
select item_id, embedding::vector from rerankdb.item_rank order by item_id

-- name: text_of_items
select item_id, embedding::vector from rerankdb.item_rank where item_id = any(%(items)s::bigint[])

-- name: histories
-- The newest max_len positive interactions of each user that the user's
-- state counts (folded: no longer queued), oldest first, with an item that
-- has a vector.  In a fold, after the batch's rows left the queue.
select u.user_id, h.items
from unnest(%(users)s::bigint[]) as u(user_id)
cross join lateral (
    select array_agg(t.item_id order by t.occurred_at, t.interaction_id) as items
    from (
        select i.item_id, i.occurred_at, i.interaction_id
        from rerankdb.interactions i
        join rerankdb.interaction_kinds kd on kd.kind = i.kind
        where i.user_id = u.user_id
          and coalesce(i.weight, kd.weight) > 0
          and not exists (select 1 from rerankdb.interaction_queue q where q.interaction_id = i.interaction_id and q.user_id = i.user_id)
          and exists (select 1 from rerankdb.item_rank r where r.item_id = i.item_id)
        order by i.occurred_at desc, i.interaction_id desc
        limit %(max_len)s
    ) t
) h

-- name: histories_citus
-- histories on Citus, which cannot run the lateral subquery over the users
-- above (a join of a function to distributed tables): a window partitioned
-- by user_id, pushed down to each user's shard.  It reads every positive row
-- of the users, where the lateral reads max_len of each through the index:
-- one node keeps the lateral.  A user with none has no row (NULL above).
select t.user_id, array_agg(t.item_id order by t.occurred_at, t.interaction_id) as items
from (
    select i.user_id, i.item_id, i.occurred_at, i.interaction_id,
           row_number() over (partition by i.user_id order by i.occurred_at desc, i.interaction_id desc) as n
    from rerankdb.interactions i
    join rerankdb.interaction_kinds kd on kd.kind = i.kind
    where i.user_id = any(%(users)s::bigint[])
      and coalesce(i.weight, kd.weight) > 0
      and not exists (select 1 from rerankdb.interaction_queue q
                      where q.interaction_id = i.interaction_id and q.user_id = i.user_id)
      and exists (select 1 from rerankdb.item_rank r where r.item_id = i.item_id)
) t
where t.n <= %(max_len)s
group by t.user_id

-- name: write_items
-- The vectors as arrays, not a temporary stage: on Citus item_rank is a
-- reference table, which a statement may not update from a local table.
update rerankdb.item_rank r
   set seq = s.seq
  from unnest(%(items)s::bigint[], %(vectors)s::vector[]) as s(item_id, seq)
 where r.item_id = s.item_id

-- name: clear_other_items
-- Items that are not in the new model and were not given a vector by it.
update rerankdb.item_rank r
   set seq = null
 where r.seq is not null
   and not (r.item_id = any(%(items)s::bigint[]))

-- name: items_without_seq
-- Of some items (NULL: all), those with a text vector and no sequence vector yet.
select item_id, embedding::vector
from rerankdb.item_rank
where (%(items)s::bigint[] is null or item_id = any(%(items)s::bigint[])) and seq is null

-- name: next_version
-- (Read apart from the insert: Citus cannot insert into a reference table
-- what a select of the same table computes.  The caller holds the exclusive
-- fold lock: no other training runs.)
select coalesce(max(version), 0) + 1 from rerankdb.sequence_model

-- name: insert_model
insert into rerankdb.sequence_model (version, items, dim, max_len, weights, report)
values (%(version)s, %(items)s, %(dim)s, %(max_len)s, %(weights)s, %(report)s)
returning version

-- name: drop_old_models
-- The newest few are kept (to compare, or to go back by hand); the rest go.
delete from rerankdb.sequence_model
where version <= (select max(version) from rerankdb.sequence_model) - %(keep)s

-- name: shared_fold_lock
-- As a fold: a training's switch (exclusive) is not half seen.
select pg_advisory_xact_lock_shared('rerankdb.user_state'::regclass::oid::integer, 1)
