-- rerankdb on Citus: the distributed layout, for data beyond one server
-- (10^8 users).  A psql script for the Citus coordinator.
--
-- STATUS: reviewed, NOT RUN against a real Citus cluster.  Citus cannot be
-- installed where rerankdb is built and tested (no Debian 12 package for
-- PostgreSQL 18, not on PyPI, too heavy to compile in CI).  What is checked,
-- by tests/test_citus_layout.py against the real schema at head: every table
-- of the schema is placed here exactly once, every distributed table has
-- user_id and keys that include it, the functions and their distribution
-- arguments exist, the prerequisite statements below apply cleanly to plain
-- PostgreSQL and leave foreign keys and triggers Citus accepts, and psql
-- runs this file against stand-ins of the Citus functions.  What Citus
-- itself will say is not checked.
--
-- What it does
--   1. checks the cluster (Citus >= 14.0, the PostgreSQL major, pgvector of
--      one version on every node, rerankdb at the revision this was written
--      for) and refuses to run until rerankdb's own code is ready (below);
--   2. applies the prerequisites: schema changes that Citus requires and
--      plain PostgreSQL accepts (keys that include user_id, triggers that
--      cannot run on Citus removed), in one transaction;
--   3. creates every rerankdb function on every node;
--   4. makes the item-keyed and one-row tables reference tables (one full
--      copy on every node) and the user-keyed tables distributed tables,
--      hash-distributed by user_id and colocated with rerankdb.interactions
--      (one user's rows of every table on the same node);
--   5. distributes rerank, rerank_scored, recommend, explain and forget_user
--      by their user_id argument: a call is sent to the node holding that
--      user and runs there against local shards and local reference copies;
--   6. removes the coordinator's local copies of the data (now in shards).
--   Re-runnable: each step skips what is already done.
--
-- Prerequisites
--   * Citus 14.0 or later (14.0.0, 2026-02-09, is the first release with
--     PostgreSQL 18 support; it supports PostgreSQL 16, 17, 18) on the
--     coordinator and every worker, metadata synced to the workers (the
--     default since Citus 11: needed for function call delegation).
--   * pgvector installed, at one version, on every node (0.8.5 here).  Citus
--     creates the extension on the workers as a dependency of the tables.
--   * `alembic upgrade head` (rerankdb migrate) done on the coordinator with
--     the revision checked below; the roles rerankdb_app, rerankdb_reader,
--     rerankdb_worker and the schema owner existing on every node with
--     their grants (Citus propagates roles and grants made while it is
--     installed; check older ones with run_command_on_workers), and
--     every login role able to connect from the coordinator to the workers
--     (Citus opens its worker connections as the current user).
--   * run as the owner of the rerankdb schema and its objects:
--       psql -v ON_ERROR_STOP=1 -v code_ready=yes [-v shard_count=64] -f sql/citus/layout.sql
--
-- NOT READY at revision 0012: rerankdb's code must change first.  The
-- script stops unless -v code_ready=yes says these are done:
--   a. The worker's interaction claim (sql/queries/user_refresh.sql,
--      claim_interactions) spans every shard; Citus refuses multi-shard
--      SELECT ... FOR UPDATE ("could not run distributed query with FOR
--      UPDATE/SHARE commands").  Claim per shard, see "The worker" below.
--      Every statement on interaction_queue must carry user_id: joins with
--      interactions on (interaction_id, user_id) (a join on interaction_id
--      alone is not colocated), and `on conflict (interaction_id)` becomes
--      `on conflict (interaction_id, user_id)` (prerequisite P1 changes the
--      keys; the old clause fails even on plain PostgreSQL).
--   b. The triggers on reference tables that write other tables are dropped
--      by P3 (Citus runs a reference table's triggers on every copy, where a
--      write to another Citus table is a remote task, refused inside a
--      trigger: "cannot execute a distributed query from a query on a
--      shard").  Their work must be done by the writers, in the same
--      transaction: the worker and set_item_vectors write item_rank beside
--      item_vectors (sync_item_rank) and release deferred interactions
--      (release_deferred; the worker's release_deferred query does it
--      already at each drain); items to embed are found by the worker
--      (items without a vector, or whose content_sha256 differs) or queued
--      by the application (enqueue_item).
--   c. rerankdb.refresh_collab_keys (every `rerankdb train`) swaps
--      collab_keys for a newly created table: on Citus that new table is a
--      plain coordinator table and the workers lose collab_keys.  It must
--      call create_reference_table on the new table before the swap (or
--      truncate, refill and reindex the reference table instead).
--   d. rerankdb.explain reads interaction_queue by interaction_id alone:
--      add `and q.user_id = i.user_id`, or the delegated call cannot be
--      planned on one shard.
--   e. Revision 0012 queues the log's inserts and deletes with statement
--      triggers over transition tables; Citus allows only row triggers on a
--      distributed table.  P3 must replace interactions_enqueue and
--      interactions_rebuild_deleted with row triggers (a row version of
--      enqueue_interactions and enqueue_user_rebuilds), or the writers
--      queue in the same statement.
--
-- Operational consequences
--   * Reference tables are copied to every node: items, their vectors and
--     the HNSW indexes cost their full size on each node (README.md here
--     has the arithmetic).  Every write to them (embeddings, training's
--     collaborative vectors, settings) is a two-phase commit to all nodes.
--   * User tables are split into shard_count shards per table (default 32,
--     Citus's own default; set once here: changing it later rewrites the
--     tables with alter_distributed_table).  Choose several shards per
--     worker core so that citus_rebalance_start can spread them.
--   * interaction_id stays a bigserial: inserts through the coordinator take
--     its sequence; inserts sent to a worker take ids from that node's own
--     range (Citus starts a bigint sequence on node group g at (g << 48) + 1),
--     unique but no longer in commit-time order across nodes.
--   * citus.enable_unsafe_triggers is set for this session: without it Citus
--     refuses to distribute a table that has triggers.  The remaining
--     triggers run on the node holding the row, against colocated shards
--     of the same user (interactions -> interaction_queue,
--     user_rebuild_queue) or the node's reference copies (kinds, settings).
--     Citus's warning: triggers "may cause visibility and deadlock issues".
--   * NOTIFY: P3 drops the NOTIFY triggers.  On Citus they fire on the
--     worker holding the shard, and a LISTEN on the coordinator never hears
--     them.  Run the worker with --no-listen (it polls every
--     RERANKDB_POLL_SECONDS), or have the application notify on the
--     coordinator, in its own transaction: select pg_notify('rerankdb_work', '').
--   * Advisory locks are per node.  The worker's locks (the partition claim
--     lock, the fold lock that training and tuning take exclusively) hold
--     only among sessions on the same node: run every worker, `rerankdb
--     train` and `rerankdb tune` against the coordinator.
--   * A distributed function is delegated only when called alone, outside a
--     transaction block: `select * from rerankdb.rerank(42, array[...])`.
--     Inside BEGIN ... COMMIT (force_delegation is left unset here) it runs
--     on the coordinator, statement by statement against the shards: same
--     result, more round trips.  The definer's rights hold on the worker
--     (SECURITY DEFINER runs there as the owner; search_path is pinned).
--   * rerankdb.status is a view: Citus checks shard access with the reading
--     role's rights (citusdata/citus#6161), so rerankdb_app, which may read
--     the view but not the queues, gets "permission denied" on the
--     interaction_queue shards.  The worker role can read it.
--   * No distributed snapshot: a REPEATABLE READ rebuild sees each node at
--     its own moment; rebuilds that touch one user (one node) are unaffected.
--   * Later `alembic upgrade`s: Citus propagates ALTER TABLE and CREATE OR
--     REPLACE FUNCTION to the workers, but a table a new revision creates is
--     a plain coordinator table until it is added here (the test fails until
--     it is).  Review each new revision against Citus before running it.
--     Revision 0010 changes no table: EXECUTE granted to each role by list
--     (grants, as under Prerequisites), new bodies for recommend and
--     similar_items (now PL/pgSQL; recommend stays distributed by user_id)
--     and for the checks of interactions, and one more column of
--     rerankdb.status (from item_queue, a reference table).
--     Revision 0011 adds rerankdb.sequence_model (a reference table here),
--     a column to item_rank (reference) and three to user_vectors
--     (distributed by user_id), an index on interactions (user_id, ...):
--     the worker's per-user history read stays on the user's shard.
--     Revision 0012 changes no table: new bodies for rerank (the context
--     items' sequence vectors, read from item_rank, a reference table; its
--     diversity through rerankdb.mmr, which reads no table) and diversify.
--     Its log triggers are per statement with transition tables
--     (interactions_enqueue, interactions_rebuild_deleted): Citus refuses
--     statement-level triggers on a distributed table, so on Citus the
--     queue rows must be written per row again (row triggers on the shards)
--     or by the writers; see "NOT READY" e.

\set ON_ERROR_STOP on
\if :{?shard_count}
\else
\set shard_count 32
\endif

-- ---------------------------------------------------------------- 1. checks
-- >>> checks
do $$
declare
    head text;
begin
    if not coalesce((select (string_to_array(split_part(extversion, '-', 1), '.'))::int[] >= array[14, 0]
                     from pg_catalog.pg_extension where extname = 'citus'), false) then
        raise exception 'rerankdb citus layout: needs the citus extension, 14.0 or later (PostgreSQL 18 support)';
    end if;
    if current_setting('server_version_num')::int / 10000 not in (16, 17, 18) then
        raise exception 'rerankdb citus layout: PostgreSQL % is not one Citus 14 supports (16, 17, 18)',
            current_setting('server_version');
    end if;
    if to_regnamespace('rerankdb') is null then
        raise exception 'rerankdb citus layout: no schema rerankdb; run rerankdb migrate (alembic upgrade head) first';
    end if;
    select version_num into head from public.rerankdb_alembic_version;
    if head is distinct from '0012' then
        raise exception 'rerankdb citus layout: written for revision 0012, this database is at %', head
            using hint = 'review the revisions since 0012 against Citus and update sql/citus/layout.sql';
    end if;
    if exists (select 1 from pg_catalog.run_command_on_workers(
                   $q$select extversion from pg_extension where extname = 'vector'$q$) w
               where not w.success
                  or w.result is distinct from (select extversion from pg_catalog.pg_extension where extname = 'vector')) then
        raise exception 'rerankdb citus layout: pgvector % is not installed on every worker',
            (select extversion from pg_catalog.pg_extension where extname = 'vector')
            using hint = 'install the same pgvector package on every node (the extension itself Citus creates)';
    end if;
end
$$;
-- <<< checks

\if :{?code_ready}
\else
\set code_ready no
\endif
\if :code_ready
\else
\echo 'rerankdb citus layout: rerankdb revision 0012 is not ready for Citus; see "NOT READY" in this file.'
\echo 'Run again with -v code_ready=yes once the worker and the functions listed there are changed.'
select 1 / 0 as code_not_ready;
\endif

-- ---------------------------------------------------------- 2. prerequisites
-- Plain SQL, in one transaction; skipped when already applied (the key of
-- rerankdb.interactions includes user_id).  tests/test_citus_layout.py runs
-- the block between the markers on plain PostgreSQL and rolls it back.
select exists (
    select 1 from pg_constraint c
    join pg_attribute a on a.attrelid = c.conrelid and a.attnum = any(c.conkey)
    where c.conrelid = 'rerankdb.interactions'::regclass and c.contype = 'p' and a.attname = 'user_id'
) as prerequisites_done \gset
\if :prerequisites_done
\echo 'rerankdb citus layout: prerequisites already applied'
\else
begin;
-- >>> prerequisites
-- P1. Citus enforces a primary key or unique constraint only if it includes
-- the distribution column, and a foreign key between distributed tables only
-- if both sides include it at the same position.  interactions is keyed by
-- interaction_id alone, and interaction_queue by interaction_id alone with a
-- foreign key on it: both keys become (interaction_id, user_id)
-- (interaction_id first, so that lookups by id keep using the index).
-- interaction_queue.user_id exists since revision 0009 (not null).
alter table rerankdb.interaction_queue drop constraint interaction_queue_interaction_id_fkey;
alter table rerankdb.interaction_queue drop constraint interaction_queue_pkey;
alter table rerankdb.interactions drop constraint interactions_pkey;
alter table rerankdb.interactions add constraint interactions_pkey primary key (interaction_id, user_id);
alter table rerankdb.interaction_queue add constraint interaction_queue_pkey primary key (interaction_id, user_id);
alter table rerankdb.interaction_queue add constraint interaction_queue_interaction_id_fkey
    foreign key (interaction_id, user_id) references rerankdb.interactions (interaction_id, user_id)
    on delete cascade;

-- P2. (none needed) The other user-keyed tables (user_state, user_vectors,
-- user_rebuild_queue, user_snapshot) are keyed by user_id alone; the
-- item-keyed and one-row tables become reference tables, where any key is
-- allowed.  Foreign keys: interactions -> interaction_kinds is distributed ->
-- reference (allowed, also with ON UPDATE CASCADE: kind is not the
-- distribution column); item_vectors, item_rank, item_queue -> items are
-- reference -> reference.  No reference table refers to a distributed one.

-- P3. Triggers Citus cannot run (see "NOT READY" b and "NOTIFY" above).
-- On reference tables, writing other tables: their work moves to the writers.
drop trigger items_enqueue_insert on rerankdb.items;
drop trigger items_enqueue_update on rerankdb.items;
drop trigger item_vectors_release_deferred on rerankdb.item_vectors;
drop trigger item_vectors_sync_rank on rerankdb.item_vectors;
drop trigger item_vectors_unsync_rank on rerankdb.item_vectors;
-- NOTIFY from the node holding the row: never heard by a LISTEN on the coordinator.
drop trigger items_notify on rerankdb.items;
drop trigger interactions_notify on rerankdb.interactions;
drop trigger interactions_rebuild_notify on rerankdb.interactions;
-- Kept: interactions_check (reads the node's copies of interaction_kinds
-- and settings), interactions_enqueue and interactions_rebuild_user (write
-- the same user's colocated queue shards), the normalize triggers (change
-- only NEW), settings_half_life_changed (raises a notice).
-- <<< prerequisites
commit;
\endif

-- Citus refuses to distribute a table with triggers unless this is on.
set citus.enable_unsafe_triggers = on;

-- --------------------------------------------- 3. functions on every node
-- Created on every node without a distribution argument: trigger functions
-- (the triggers run on the workers) and the helpers the distributed
-- functions call there (blend, center, diversify, collab_key, nearest, ...).
-- Citus disables check_function_bodies while doing so, so the order with the
-- tables does not matter; "already distributed" notices are harmless
-- (Citus propagates CREATE FUNCTION itself once it is installed).
select create_distributed_function('rerankdb._check_vector_arguments(text, bigint[], vector[])');
select create_distributed_function('rerankdb.blend(vector, vector, double precision, vector, double precision)');
select create_distributed_function('rerankdb.center(vector, vector, double precision)');
select create_distributed_function('rerankdb.check_interaction()');
select create_distributed_function('rerankdb.check_interactions()');
select create_distributed_function('rerankdb.collab_key(vector)');
select create_distributed_function('rerankdb.counts()');
select create_distributed_function('rerankdb.dimension()');
select create_distributed_function('rerankdb.diversify(bigint[], double precision[], double precision, integer, boolean)');
select create_distributed_function('rerankdb.enqueue_interactions()');
select create_distributed_function('rerankdb.enqueue_item()');
select create_distributed_function('rerankdb.enqueue_user_rebuild()');
select create_distributed_function('rerankdb.enqueue_user_rebuilds()');
select create_distributed_function('rerankdb.interaction_problem(timestamp with time zone, double precision)');
select create_distributed_function('rerankdb.mmr(bigint[], double precision[], double precision[], boolean, double precision, integer)');
select create_distributed_function('rerankdb.nearest(vector, vector, integer, bigint, bigint)');
select create_distributed_function('rerankdb.normalize_embedding()');
select create_distributed_function('rerankdb.notice_half_life_changed()');
select create_distributed_function('rerankdb.notify_worker()');
select create_distributed_function('rerankdb.refresh_centers(integer)');
select create_distributed_function('rerankdb.refresh_collab_keys()');
select create_distributed_function('rerankdb.refuse_interaction(timestamp with time zone, text)');
select create_distributed_function('rerankdb.release_deferred()');
select create_distributed_function('rerankdb.set_item_vectors(bigint[], vector[])');
select create_distributed_function('rerankdb.set_user_vectors(bigint[], vector[])');
select create_distributed_function('rerankdb.similar_items(bigint, integer)');
select create_distributed_function('rerankdb.sync_item_rank()');

-- ------------------------------------------------------ 4. reference tables
-- create_reference_table(table_name regclass).  Referenced tables first
-- (a foreign key needs its target distributed already).
-- One-row tables, read by the functions on every node (config, settings)
-- or written by the worker (worker_state, workers: one small two-phase
-- commit per drain).
select create_reference_table('rerankdb.config')
where not exists (select 1 from pg_dist_partition where logicalrelid = 'rerankdb.config'::regclass);
select create_reference_table('rerankdb.settings')
where not exists (select 1 from pg_dist_partition where logicalrelid = 'rerankdb.settings'::regclass);
select create_reference_table('rerankdb.worker_state')
where not exists (select 1 from pg_dist_partition where logicalrelid = 'rerankdb.worker_state'::regclass);
select create_reference_table('rerankdb.workers')
where not exists (select 1 from pg_dist_partition where logicalrelid = 'rerankdb.workers'::regclass);
select create_reference_table('rerankdb.interaction_kinds')
where not exists (select 1 from pg_dist_partition where logicalrelid = 'rerankdb.interaction_kinds'::regclass);
-- The sequence models (revision 0011): a few rows of weights, read by every worker.
select create_reference_table('rerankdb.sequence_model')
where not exists (select 1 from pg_dist_partition where logicalrelid = 'rerankdb.sequence_model'::regclass);
-- Item-keyed: every user's ranking reads any item.
select create_reference_table('rerankdb.items')
where not exists (select 1 from pg_dist_partition where logicalrelid = 'rerankdb.items'::regclass);
select create_reference_table('rerankdb.item_vectors')
where not exists (select 1 from pg_dist_partition where logicalrelid = 'rerankdb.item_vectors'::regclass);
select create_reference_table('rerankdb.item_rank')
where not exists (select 1 from pg_dist_partition where logicalrelid = 'rerankdb.item_rank'::regclass);
select create_reference_table('rerankdb.item_queue')
where not exists (select 1 from pg_dist_partition where logicalrelid = 'rerankdb.item_queue'::regclass);
select create_reference_table('rerankdb.collab_keys')
where not exists (select 1 from pg_dist_partition where logicalrelid = 'rerankdb.collab_keys'::regclass);

-- ---------------------------------------------------- 5. distributed tables
-- create_distributed_table(table_name regclass, distribution_column text,
--     distribution_type citus.distribution_type default 'hash',
--     colocate_with text default 'default', shard_count int default null).
-- shard_count cannot be combined with colocate_with a table: interactions
-- starts its own colocation group, the others join it.
select create_distributed_table('rerankdb.interactions', 'user_id',
                                colocate_with => 'none', shard_count => :shard_count)
where not exists (select 1 from pg_dist_partition where logicalrelid = 'rerankdb.interactions'::regclass);
select create_distributed_table('rerankdb.interaction_queue', 'user_id', colocate_with => 'rerankdb.interactions')
where not exists (select 1 from pg_dist_partition where logicalrelid = 'rerankdb.interaction_queue'::regclass);
select create_distributed_table('rerankdb.user_state', 'user_id', colocate_with => 'rerankdb.interactions')
where not exists (select 1 from pg_dist_partition where logicalrelid = 'rerankdb.user_state'::regclass);
select create_distributed_table('rerankdb.user_vectors', 'user_id', colocate_with => 'rerankdb.interactions')
where not exists (select 1 from pg_dist_partition where logicalrelid = 'rerankdb.user_vectors'::regclass);
select create_distributed_table('rerankdb.user_rebuild_queue', 'user_id', colocate_with => 'rerankdb.interactions')
where not exists (select 1 from pg_dist_partition where logicalrelid = 'rerankdb.user_rebuild_queue'::regclass);
select create_distributed_table('rerankdb.user_snapshot', 'user_id', colocate_with => 'rerankdb.interactions')
where not exists (select 1 from pg_dist_partition where logicalrelid = 'rerankdb.user_snapshot'::regclass);

-- ------------------------------------- 6. functions distributed by user_id
-- create_distributed_function(function_name regprocedure,
--     distribution_arg_name text default null, colocate_with text default
--     'default', force_delegation bool default null).
-- Each reads or writes one user's rows (user_id = the argument) and the
-- reference tables: delegated to the node holding the user, it runs there
-- on local shards.  force_delegation is left unset (see above).
-- Stay on the coordinator: set_user_vectors (an array of users across
-- shards), refresh_centers and counts (every user), nearest (owner-only;
-- runs wherever recommend runs), similar_items (no user).
select create_distributed_function(
    'rerankdb.rerank(bigint, bigint[], integer, double precision, bigint[], boolean)',
    distribution_arg_name => 'user_id', colocate_with => 'rerankdb.interactions');
select create_distributed_function(
    'rerankdb.rerank_scored(bigint, bigint[], double precision[], double precision, integer, double precision, bigint[], boolean)',
    distribution_arg_name => 'user_id', colocate_with => 'rerankdb.interactions');
select create_distributed_function(
    'rerankdb.recommend(bigint, integer, boolean)',
    distribution_arg_name => 'user_id', colocate_with => 'rerankdb.interactions');
select create_distributed_function(
    'rerankdb.explain(bigint, bigint[], integer)',
    distribution_arg_name => 'user_id', colocate_with => 'rerankdb.interactions');
select create_distributed_function(
    'rerankdb.forget_user(bigint)',
    distribution_arg_name => 'user_id', colocate_with => 'rerankdb.interactions');

-- ------------------------------------------ 7. the coordinator's local data
-- create_* copied the rows into the shards; the coordinator's own copies are
-- unreachable by queries from now on and only take space.
select truncate_local_data_after_distributing_table(logicalrelid)
from pg_dist_partition
where logicalrelid::regclass::text like 'rerankdb.%'
order by logicalrelid::regclass::text;

-- -------------------------------------------------------------- the result
select table_name, citus_table_type, distribution_column, colocation_id, shard_count, table_size
from citus_tables
where table_name::text like 'rerankdb.%'
order by citus_table_type, table_name::text;

-- ---------------------------------------------------------------- The worker
-- (Comments only: what rerankdb's worker must do on Citus; not implemented.)
--
-- Where it runs: every worker process, `rerankdb train`, `rerankdb tune` and
-- `rerankdb compact` connect to the coordinator, so that their advisory
-- locks (per node) meet.  Polling, not LISTEN (--no-listen): see NOTIFY.
--
-- Claim per shard.  A fold must be a single-shard transaction: Citus runs
-- SELECT ... FOR UPDATE [SKIP LOCKED] only on one shard, and a transaction
-- that stays on one node needs no two-phase commit.  rerankdb's partition of
-- users today, hashint8(user_id) & 15, takes the low bits of the hash; Citus
-- shards are ranges of the same hash (Citus hashes a bigint with hashint8,
-- the type's hash function, and gives shard i of n the range from
-- -2^31 + i * 2^32 / n), so each of today's partitions spans every shard.
-- Make a partition a shard instead:
--   1. the partitions: select shardid, shardminvalue::int, shardmaxvalue::int
--      from pg_dist_shard where logicalrelid = 'rerankdb.interaction_queue'::regclass
--      (read them, do not compute them: citus_split_shard_by_split_points
--      changes the ranges);
--   2. a fold takes one shard: pg_try_advisory_xact_lock(key, shardid) on the
--      coordinator (workers take different shards, one worker group per
--      shard group when there are as many workers as shards);
--   3. its users, without locks (a read on every shard, cheap with an index
--      on hashint8(user_id) in place of the & 15 one):
--        select distinct q.user_id from rerankdb.interaction_queue q
--        where hashint8(q.user_id) between :min and :max and not q.deferred
--          and q.not_before <= clock_timestamp() limit :users
--      (or get_shard_id_for_distribution_column('rerankdb.interaction_queue',
--      q.user_id) = :shardid: the same set, a function call per row);
--   4. the claim, now on one shard (Citus prunes user_id = any(array) to the
--      shards of the values, here one):
--        ... from rerankdb.interaction_queue q
--        join rerankdb.interactions i on i.interaction_id = q.interaction_id and i.user_id = q.user_id
--        where q.user_id = any(:users) ... for update of q skip locked
--      and the fold's writes to user_state, user_vectors and the queue with
--      the same user_id = any(:users): one node, one local transaction.
-- Simpler and coarser: one worker process per shard group, each given its
-- shard ranges.  Either way, a shard move (citus_rebalance_start) only
-- blocks the folds of the shard it moves, while it moves it.
--
-- Items: the item claim (sql/queries/item_refresh.sql, claim_items) is a
-- CTE with FOR UPDATE SKIP LOCKED on a reference table, which Citus's router
-- planner does not support in a CTE; claim with a plain SELECT ... FOR
-- UPDATE SKIP LOCKED, then update by id.  One item worker avoids relying on
-- SKIP LOCKED across the copies of a reference table (not verified here).
