-- Statements of rerankdb/partitions.py: a fold's partitions of users, the
-- shards of rerankdb.interaction_queue on Citus.  Loaded once by
-- rerankdb.sqlfiles.queries("partitions"); each "-- name:" starts a statement.

-- name: is_citus
-- Whether the queue is a Citus distributed table (its partitions are then its shards).
select to_regclass('pg_catalog.pg_dist_shard') is not null

-- name: shard_ranges
-- The queue's shards on Citus: each a range of hashint8(user_id), the hash
-- Citus distributes a bigint by.  Read, not computed: a shard split changes them.
select shardminvalue::int, shardmaxvalue::int from pg_catalog.pg_dist_shard
where logicalrelid = 'rerankdb.interaction_queue'::regclass
order by 1

-- name: user_hashes
-- Each user's hashint8(user_id), in the order given.
select hashint8(u.user_id) from unnest(%(users)s::bigint[]) with ordinality as u(user_id, n) order by u.n
