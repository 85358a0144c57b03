-- rerankdb on Citus: the distributed layout, for data beyond one server
-- (10^8 users).  A psql script for the Citus coordinator; `rerankdb migrate
-- --citus` runs it after `alembic upgrade head`.
--
-- Tested on Citus 14.0.1 with PostgreSQL 18.4 (tests/test_citus.py, a
-- coordinator and two workers built from source, in CI): every public
-- function gives the same rows as one node, calls are delegated to the
-- user's node, two worker processes fold exactly once while the application
-- writes and a worker node restarts, forget_user, training and tuning, the
-- three roles.  tests/test_citus_layout.py checks this file against the
-- schema at head without a cluster.
--
-- What it does
--   1. checks the cluster (Citus >= 14.0, the PostgreSQL major, pgvector of
--      one version on every node, rerankdb at the revision this is for);
--   2. applies the prerequisites, in one transaction: triggers Citus cannot
--      run dropped or made per row (see P3), the queue's foreign key
--      dropped until both its tables are distributed;
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
--   * Citus 14.0 or later (the first release with PostgreSQL 18) on the
--     coordinator and every worker, metadata synced to the workers (the
--     default since Citus 11: needed for function call delegation), and
--     max_prepared_transactions > 0 on every node (two-phase commits).
--   * pgvector installed, at one version, on every node.
--   * `alembic upgrade head` (rerankdb migrate) done on the coordinator: the
--     revision is checked below.  Roles and grants made while Citus is
--     installed reach every node; every login role must be able to connect
--     from the coordinator to the workers (Citus connects as the current user).
--   * run as the owner of the rerankdb schema and its objects:
--       psql -v ON_ERROR_STOP=1 [-v shard_count=64] -f sql/citus/layout.sql
--
-- Operational consequences
--   * Reference tables are copied to every node: items, their vectors and
--     the HNSW indexes cost their full size on each node (README.md here
--     has the arithmetic).  Every write to them (embeddings, training's
--     collaborative vectors, settings) is a two-phase commit to all nodes.
--   * User tables are split into shard_count shards per table (default 32,
--     Citus's own default; set at the first run: changing it later rewrites
--     the tables with alter_distributed_table).  Choose several shards per
--     worker core so that citus_rebalance_start can spread them.
--   * The worker folds one shard per transaction (rerankdb/partitions.py: a
--     fold's partition of users is a shard, read from pg_dist_shard), so
--     that its FOR UPDATE SKIP LOCKED runs on one shard, as Citus requires,
--     and the transaction stays on one node.  Advisory locks are per node:
--     run every worker, `rerankdb train`, `tune` and `compact` against the
--     coordinator, where their locks meet.
--   * NOTIFY: P3 drops the NOTIFY triggers (a NOTIFY on a shard reaches only
--     listeners on that node, and Citus cannot PREPARE a transaction that
--     notified).  The worker polls: set RERANKDB_POLL_SECONDS (0.05 gives a
--     fold within about 50 ms).
--   * interaction_id stays a bigserial: inserts through the coordinator take
--     its sequence.
--   * citus.enable_unsafe_triggers is set for this session: without it Citus
--     refuses to distribute a table that has triggers.  The remaining
--     triggers run on the node holding the row, against colocated shards
--     of the same user (interactions -> interaction_queue,
--     user_rebuild_queue) or the node's reference copies (kinds, settings).
--   * A distributed function is delegated only when called alone, outside a
--     transaction block: `select * from rerankdb.rerank(42, array[...])`.
--     Inside BEGIN ... COMMIT it runs on the coordinator, statement by
--     statement against the shards: same result, more round trips.  The
--     definer's rights hold on the workers (SECURITY DEFINER runs there as
--     the owner; search_path is pinned).
--   * No distributed snapshot: a REPEATABLE READ rebuild sees each node at
--     its own moment; a rebuild runs one shard at a time, unaffected.
--   * Later `alembic upgrade`s: Citus propagates ALTER TABLE and CREATE OR
--     REPLACE FUNCTION to the workers; then run this again (rerankdb
--     migrate --citus does both).  A table a new revision creates is a plain
--     coordinator table until it is placed here (tests/test_citus_layout.py
--     fails until it is).

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
    if head is distinct from '0017' then
        raise exception 'rerankdb citus layout: written for revision 0017, this database is at %', head
            using hint = 'upgrade first (rerankdb migrate --citus); a newer revision needs a newer rerankdb';
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

-- ---------------------------------------------------------- 2. prerequisites
-- Plain SQL, in one transaction; skipped when already applied (the log's
-- queue trigger runs per row).  tests/test_citus_layout.py runs the block
-- between the markers on plain PostgreSQL and rolls it back.
select exists (
    select 1 from pg_trigger
    where tgrelid = 'rerankdb.interactions'::regclass and tgname = 'interactions_enqueue'
      and (tgtype & 1) = 1
) as prerequisites_done \gset
\if :prerequisites_done
\echo 'rerankdb citus layout: prerequisites already applied'
\else
begin;
-- >>> prerequisites
-- P1. Keys: revision 0013 keys the log and its queue by (interaction_id,
-- user_id), as Citus requires of a distributed table.  The log has no
-- foreign keys since revision 0016 (statement triggers do their work in
-- sets, P3); on Citus both keys are added in step 5, once the tables are
-- distributed: the queue's on the log with ON DELETE CASCADE and without ON
-- UPDATE CASCADE (Citus refuses it on the distribution column, which it
-- never lets change anyway), the log's on the kinds as revision 0001 made it.

-- P2. (none needed) The other user-keyed tables (user_state, user_vectors,
-- user_rebuild_queue, user_snapshot) are keyed by user_id alone; the
-- item-keyed and one-row tables become reference tables, where any key is
-- allowed.  Foreign keys: interactions -> interaction_kinds (step 5) is distributed ->
-- reference (allowed, also with ON UPDATE CASCADE: kind is not the
-- distribution column); item_vectors, item_rank, item_queue -> items are
-- reference -> reference.  No reference table refers to a distributed one.

-- P3. Triggers Citus cannot run.
-- On reference tables, writing other tables (Citus runs them on every copy,
-- where a write to another Citus table is refused): their work is done by
-- the writers.  The worker finds the items to embed (no vector, or one made
-- from another text) and writes item_rank and releases deferred
-- interactions beside the vectors it writes; rerankdb.set_item_vectors does
-- the same where these triggers are missing (revision 0013).
drop trigger items_enqueue_insert on rerankdb.items;
drop trigger items_enqueue_update on rerankdb.items;
drop trigger item_vectors_release_deferred on rerankdb.item_vectors;
drop trigger item_vectors_sync_rank on rerankdb.item_vectors;
drop trigger item_vectors_unsync_rank on rerankdb.item_vectors;
-- NOTIFY from the node holding the row: never heard by a LISTEN on the
-- coordinator.  The worker polls on Citus.
drop trigger items_notify on rerankdb.items;
drop trigger interactions_notify on rerankdb.interactions;
drop trigger interactions_rebuild_notify on rerankdb.interactions;
-- Statement triggers with transition tables (revision 0012): Citus allows
-- only row triggers on a distributed table ("unrecognized RTE kind" on the
-- shards).  The same functions run per row: rerankdb.enqueue_interactions
-- (revision 0013) and rerankdb.enqueue_user_rebuild take a row as well, and
-- rerankdb.check_interaction checks every inserted row whole (what
-- rerankdb.check_interactions checked per statement, a kind's weight, too).
drop trigger interactions_check_inserted on rerankdb.interactions;
drop trigger interactions_check on rerankdb.interactions;
drop trigger interactions_check_update on rerankdb.interactions;
create trigger interactions_check
    before insert or update of occurred_at, weight, kind on rerankdb.interactions
    for each row execute function rerankdb.check_interaction();
drop trigger interactions_enqueue on rerankdb.interactions;
create trigger interactions_enqueue
    after insert on rerankdb.interactions
    for each row execute function rerankdb.enqueue_interactions();
drop trigger interactions_rebuild_deleted on rerankdb.interactions;
create trigger interactions_rebuild_deleted
    after delete on rerankdb.interactions
    for each row execute function rerankdb.enqueue_user_rebuild();
-- What the foreign key of step 5 does instead (revision 0016's triggers: per
-- statement, on truncate, and a row trigger writing the queue from the log's
-- shard).
drop trigger interactions_unqueue_deleted on rerankdb.interactions;
drop trigger interactions_unqueue_truncated on rerankdb.interactions;
drop trigger interactions_unqueue_updated on rerankdb.interactions;
drop trigger interaction_kinds_deleted on rerankdb.interaction_kinds;
drop trigger interaction_kinds_truncated on rerankdb.interaction_kinds;
drop trigger interaction_kinds_renamed on rerankdb.interaction_kinds;
-- Kept: interactions_rebuild_user (writes the same user's colocated rebuild
-- queue shard), the normalize triggers (change only NEW),
-- settings_half_life_changed (raises a notice).
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
select create_distributed_function('rerankdb.check_kinds()');
select create_distributed_function('rerankdb.collab_key(vector)');
select create_distributed_function('rerankdb.counts()');
select create_distributed_function('rerankdb.dimension()');
select create_distributed_function('rerankdb.diversify(bigint[], double precision[], double precision, integer, boolean)');
select create_distributed_function('rerankdb.enqueue_interactions()');
select create_distributed_function('rerankdb.enqueue_item()');
select create_distributed_function('rerankdb.enqueue_user_rebuild()');
select create_distributed_function('rerankdb.enqueue_user_rebuilds()');
select create_distributed_function('rerankdb.hybrid_key(vector, double precision, vector, double precision, integer, vector, double precision, integer)');
select create_distributed_function('rerankdb.interaction_problem(timestamp with time zone, double precision)');
select create_distributed_function('rerankdb.mmr(bigint[], double precision[], bigint[], double precision[], double precision, double precision, double precision, integer)');
select create_distributed_function('rerankdb.nearest(vector, vector, vector, integer, bigint, bigint)');
select create_distributed_function('rerankdb.normalize_embedding()');
select create_distributed_function('rerankdb.notice_half_life_changed()');
select create_distributed_function('rerankdb.notify_worker()');
select create_distributed_function('rerankdb.refresh_centers(integer)');
select create_distributed_function('rerankdb.refresh_collab_keys()');
select create_distributed_function('rerankdb.refresh_hybrid_keys()');
select create_distributed_function('rerankdb.refuse_interaction(timestamp with time zone, text)');
select create_distributed_function('rerankdb.release_deferred()');
select create_distributed_function('rerankdb.set_item_vectors(bigint[], vector[])');
select create_distributed_function('rerankdb.set_user_vectors(bigint[], vector[])');
select create_distributed_function('rerankdb.similar_items(bigint, integer)');
select create_distributed_function('rerankdb.swap_in_next(text, text)');
select create_distributed_function('rerankdb.sync_item_rank()');
select create_distributed_function('rerankdb.unqueue_interactions()');

-- ------------------------------------------------------ 4. reference tables
-- create_reference_table(table_name regclass).  Referenced tables first
-- (a foreign key needs its target distributed already).
-- One-row tables, read by the functions on every node (config, settings)
-- or written by the worker (worker_state, workers: one small two-phase
-- commit per drain).
select create_reference_table('rerankdb.config')
where not exists (select 1 from citus_tables where table_name = 'rerankdb.config'::regclass and citus_table_type = 'reference');
select create_reference_table('rerankdb.settings')
where not exists (select 1 from citus_tables where table_name = 'rerankdb.settings'::regclass and citus_table_type = 'reference');
select create_reference_table('rerankdb.worker_state')
where not exists (select 1 from citus_tables where table_name = 'rerankdb.worker_state'::regclass and citus_table_type = 'reference');
select create_reference_table('rerankdb.workers')
where not exists (select 1 from citus_tables where table_name = 'rerankdb.workers'::regclass and citus_table_type = 'reference');
select create_reference_table('rerankdb.interaction_kinds')
where not exists (select 1 from citus_tables where table_name = 'rerankdb.interaction_kinds'::regclass and citus_table_type = 'reference');
-- The sequence models (revision 0011): a few rows of weights, read by every worker.
select create_reference_table('rerankdb.sequence_model')
where not exists (select 1 from citus_tables where table_name = 'rerankdb.sequence_model'::regclass and citus_table_type = 'reference');
-- Item-keyed: every user's ranking reads any item.
select create_reference_table('rerankdb.items')
where not exists (select 1 from citus_tables where table_name = 'rerankdb.items'::regclass and citus_table_type = 'reference');
select create_reference_table('rerankdb.item_vectors')
where not exists (select 1 from citus_tables where table_name = 'rerankdb.item_vectors'::regclass and citus_table_type = 'reference');
select create_reference_table('rerankdb.item_rank')
where not exists (select 1 from citus_tables where table_name = 'rerankdb.item_rank'::regclass and citus_table_type = 'reference');
select create_reference_table('rerankdb.item_queue')
where not exists (select 1 from citus_tables where table_name = 'rerankdb.item_queue'::regclass and citus_table_type = 'reference');
select create_reference_table('rerankdb.collab_keys')
where not exists (select 1 from citus_tables where table_name = 'rerankdb.collab_keys'::regclass and citus_table_type = 'reference');
-- The hybrid index (revision 0014): read by nearest on every node, never
-- built on Citus (rerankdb.refresh_hybrid_keys returns 0 there), so nearest
-- keeps the text and collaborative indexes.
select create_reference_table('rerankdb.hybrid_meta')
where not exists (select 1 from citus_tables where table_name = 'rerankdb.hybrid_meta'::regclass and citus_table_type = 'reference');
select create_reference_table('rerankdb.hybrid_keys')
where not exists (select 1 from citus_tables where table_name = 'rerankdb.hybrid_keys'::regclass and citus_table_type = 'reference');
select create_reference_table('rerankdb.hybrid_keys_fresh')
where not exists (select 1 from citus_tables where table_name = 'rerankdb.hybrid_keys_fresh'::regclass and citus_table_type = 'reference');

-- ---------------------------------------------------- 5. distributed tables
-- create_distributed_table(table_name regclass, distribution_column text,
--     distribution_type citus.distribution_type default 'hash',
--     colocate_with text default 'default', shard_count int default null).
-- shard_count cannot be combined with colocate_with a table: interactions
-- starts its own colocation group, the others join it.
select create_distributed_table('rerankdb.interactions', 'user_id',
                                colocate_with => 'none', shard_count => :shard_count)
where not exists (select 1 from citus_tables where table_name = 'rerankdb.interactions'::regclass and citus_table_type = 'distributed');
select create_distributed_table('rerankdb.interaction_queue', 'user_id', colocate_with => 'rerankdb.interactions')
where not exists (select 1 from citus_tables where table_name = 'rerankdb.interaction_queue'::regclass and citus_table_type = 'distributed');
select create_distributed_table('rerankdb.user_state', 'user_id', colocate_with => 'rerankdb.interactions')
where not exists (select 1 from citus_tables where table_name = 'rerankdb.user_state'::regclass and citus_table_type = 'distributed');
select create_distributed_table('rerankdb.user_vectors', 'user_id', colocate_with => 'rerankdb.interactions')
where not exists (select 1 from citus_tables where table_name = 'rerankdb.user_vectors'::regclass and citus_table_type = 'distributed');
select create_distributed_table('rerankdb.user_rebuild_queue', 'user_id', colocate_with => 'rerankdb.interactions')
where not exists (select 1 from citus_tables where table_name = 'rerankdb.user_rebuild_queue'::regclass and citus_table_type = 'distributed');
select create_distributed_table('rerankdb.user_snapshot', 'user_id', colocate_with => 'rerankdb.interactions')
where not exists (select 1 from citus_tables where table_name = 'rerankdb.user_snapshot'::regclass and citus_table_type = 'distributed');

-- The queue's foreign key on the log, on (interaction_id, user_id): both
-- sides colocated, so Citus enforces it shard by shard; and the log's on the
-- kinds, a reference table (on one node, revision 0016's triggers do their
-- work in sets; P3 dropped them here).
do $$
begin
    if not exists (select 1 from pg_constraint where conname = 'interaction_queue_interaction_id_fkey'
                   and conrelid = 'rerankdb.interaction_queue'::regclass) then
        alter table rerankdb.interaction_queue add constraint interaction_queue_interaction_id_fkey
            foreign key (interaction_id, user_id) references rerankdb.interactions (interaction_id, user_id)
            on delete cascade;
    end if;
end
$$;
-- Its own transaction: Citus adds a key to a reference table over one
-- connection per node, which it refuses after the parallel work above.
do $$
begin
    if not exists (select 1 from pg_constraint where conname = 'interactions_kind_fkey'
                   and conrelid = 'rerankdb.interactions'::regclass) then
        alter table rerankdb.interactions add constraint interactions_kind_fkey
            foreign key (kind) references rerankdb.interaction_kinds (kind) on update cascade;
    end if;
end
$$;

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

-- rerankdb.nearest runs inside recommend's query (a function in its FROM
-- clause): on the user's node, a query nested in a query, where Citus
-- refuses any query of a Citus table ("cannot execute a distributed query
-- from a query on a shard") unless told that it is safe.  It is: nearest
-- reads the node's reference copies (settings, the item indexes) and the
-- same user's colocated log.
alter function rerankdb.nearest(vector, vector, vector, integer, bigint, bigint)
    set citus.allow_nested_distributed_execution = on;
-- On one node nearest keeps one generic plan; Citus plans a query of its
-- tables only with the parameters' values ("could not create distributed
-- plan"), so here each call gets its own.
alter function rerankdb.nearest(vector, vector, vector, integer, bigint, bigint)
    set plan_cache_mode = 'force_custom_plan';

-- ------------------------------------------ 7. the coordinator's local data
-- create_* copied the rows into the shards; the coordinator's own copies are
-- unreachable by queries from now on and only take space.
select truncate_local_data_after_distributing_table(logicalrelid)
from pg_dist_partition
where logicalrelid::regclass::text like 'rerankdb.%'
order by logicalrelid::regclass::text;

-- Citus recreates the views over the tables it distributes, without their
-- grants: rerankdb.status gets its grants back, as on one node.
grant select on rerankdb.status to rerankdb_app, rerankdb_worker;

-- -------------------------------------------------------------- the result
select table_name, citus_table_type, distribution_column, colocation_id, shard_count, table_size
from citus_tables
where table_name::text like 'rerankdb.%'
order by citus_table_type, table_name::text;
