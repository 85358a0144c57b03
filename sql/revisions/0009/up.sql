-- rerankdb 0009: a bounded log (rerankdb compact) and the workers' own
-- figures (rerankdb status, Prometheus).  Frozen once released.
--
-- A user's state is a decayed sum over their log.  Compaction folds the
-- interactions older than a cutoff into user_snapshot (the same sums, over
-- those rows only) and deletes them from the log; a rebuild starts from the
-- snapshot instead of from zero and folds the rest of the log on top, so it
-- still equals the incremental state.
create table rerankdb.user_snapshot (
    user_id bigint primary key,
    weighted_sum vector not null,       -- as user_state's, over the compacted rows only
    ref_time timestamptz not null,      -- the newest compacted row's time
    interactions bigint not null,       -- compacted rows counted
    collab_sum vector,                  -- in the collaborative space of collab_trained_at
    short_sum vector not null,
    short_collab_sum vector,
    collab_trained_at timestamptz,      -- settings.trained_at when the collab sums were folded
    half_life interval,                 -- the half-lives the sums decayed with
    short_half_life interval not null,
    compacted_before timestamptz not null,  -- the latest cutoff that moved rows in
    updated_at timestamptz not null default now()
) with (toast_tuple_target = 8160);
do $$
begin
    execute 'alter table rerankdb.user_snapshot alter column weighted_sum type vector('
        || (select dim from rerankdb.config) || '), alter column short_sum type vector('
        || (select dim from rerankdb.config) || ')';
end
$$;

-- Several workers: each fold claims the interactions of one partition of the
-- users (hashint8(user_id) & 15, under an advisory lock of that partition),
-- so that workers fold disjoint users instead of waiting for each other's
-- user_state locks.  The queue row carries its user for that (and for a
-- distribution by user_id, sql/citus/).
alter table rerankdb.interaction_queue add column user_id bigint;
update rerankdb.interaction_queue q set user_id = i.user_id
from rerankdb.interactions i where i.interaction_id = q.interaction_id;
alter table rerankdb.interaction_queue alter column user_id set not null;
create index interaction_queue_partition_idx
    on rerankdb.interaction_queue ((hashint8(user_id) & 15), interaction_id);

alter table rerankdb.worker_state
    add column last_compact_at timestamptz,
    add column compacted_before timestamptz;  -- the newest cutoff any compaction used

-- One row per running worker process: what it did since it started, written
-- after each drain.  `rerankdb status` reads them; a worker's Prometheus
-- endpoint serves the same counters.  Rows of workers not seen for a day are
-- deleted by the next worker to start.
create table rerankdb.workers (
    worker_id text primary key,         -- host:pid:start
    host text not null,
    pid integer not null,
    started_at timestamptz not null,
    seen_at timestamptz not null,
    interactions_folded bigint not null default 0,
    items_embedded bigint not null default 0,
    interactions_set_aside bigint not null default 0,
    items_failed bigint not null default 0,
    users_rebuilt bigint not null default 0,
    drains bigint not null default 0,   -- drains that did some work
    busy_seconds double precision not null default 0,
    last_drain_seconds double precision
);

-- The worker role writes snapshots, but may not delete from the log: a
-- retention policy is the owner's decision.  Compaction runs as the owner, or
-- as a worker the DBA allowed: grant delete on rerankdb.interactions to ...
grant select, insert, update, delete on rerankdb.user_snapshot, rerankdb.workers to rerankdb_worker;
grant select on rerankdb.workers to rerankdb_app;
