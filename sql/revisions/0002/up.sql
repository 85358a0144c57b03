-- rerankdb 0002: the worker's queues and state.  Frozen once released.
--
-- Change capture is trigger-fed queues (not a "max id seen" watermark, which
-- misses interactions whose transactions commit out of id order): a queue row
-- is committed atomically with the row it stands for, claimed by a worker
-- with FOR UPDATE SKIP LOCKED, and deleted in the same transaction as the
-- vectors it accounts for.

-- Item vectors made from text remember what they were made from, so that an
-- update that does not change the text costs nothing.
alter table rerankdb.item_vectors
    add column content_sha256 bytea null,
    add column model text null;

-- Items waiting to be embedded.  not_before is both the retry backoff of an
-- item whose text could not be embedded and the lease of a claimed item.
create table rerankdb.item_queue (
    item_id bigint primary key references rerankdb.items (item_id) on delete cascade,
    enqueued_at timestamptz not null default clock_timestamp(),
    attempts integer not null default 0,
    last_error text null,
    not_before timestamptz not null default '-infinity'
);
create index item_queue_due_idx on rerankdb.item_queue (not_before, item_id);

-- Interactions waiting to be folded into their user's vector.  deferred:
-- the item had no vector yet; released when it gets one.
create table rerankdb.interaction_queue (
    interaction_id bigint primary key
        references rerankdb.interactions (interaction_id) on delete cascade,
    item_id bigint not null,
    deferred boolean not null default false,
    enqueued_at timestamptz not null default clock_timestamp()
);
create index interaction_queue_deferred_idx on rerankdb.interaction_queue (item_id) where deferred;

-- Queue tables churn: every row is inserted once and deleted once.  Vacuum
-- them after a fixed number of dead rows (not a fraction of a table that is
-- usually near empty), so claims never wade through a bulk load's dead rows.
alter table rerankdb.item_queue set (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 5000);
alter table rerankdb.interaction_queue set (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 5000);

-- The unnormalized state behind each user vector: the weighted, time-decayed
-- sum of item (and context) vectors, decayed to ref_time.  Folding a new
-- interaction rescales it by the decay since ref_time and adds one term: O(1)
-- per interaction, no history re-read.
create table rerankdb.user_state (
    user_id bigint primary key,
    weighted_sum vector not null,       -- unnormalized; its direction is the user vector
    ref_time timestamptz not null,
    interactions bigint not null default 0,
    updated_at timestamptz not null default now()
);
do $$
begin
    execute 'alter table rerankdb.user_state alter column weighted_sum type vector('
        || (select dim from rerankdb.config) || ')';
end
$$;

-- One row of worker bookkeeping, read by rerankdb.status.
create table rerankdb.worker_state (
    singleton boolean primary key default true check (singleton),
    model text null,
    last_item_refresh_at timestamptz null,
    last_user_refresh_at timestamptz null,
    last_rebuild_at timestamptz null
);
insert into rerankdb.worker_state default values;

create trigger items_enqueue_insert
    after insert on rerankdb.items
    for each row execute function rerankdb.enqueue_item();
create trigger items_enqueue_update
    after update of content on rerankdb.items
    for each row when (old.content is distinct from new.content)
    execute function rerankdb.enqueue_item();
create trigger items_notify
    after insert or update of content on rerankdb.items
    for each statement execute function rerankdb.notify_worker();

create trigger interactions_enqueue
    after insert on rerankdb.interactions
    for each row execute function rerankdb.enqueue_interaction();
create trigger interactions_notify
    after insert on rerankdb.interactions
    for each statement execute function rerankdb.notify_worker();

create trigger item_vectors_release_deferred
    after insert on rerankdb.item_vectors
    for each row execute function rerankdb.release_deferred();

-- Work that existed before this revision: items without a vector and every
-- interaction not yet folded.
insert into rerankdb.item_queue (item_id)
select i.item_id from rerankdb.items i
where not exists (select 1 from rerankdb.item_vectors v where v.item_id = i.item_id);
insert into rerankdb.interaction_queue (interaction_id, item_id)
select interaction_id, item_id from rerankdb.interactions;
