-- rerankdb 0005: trust.  Frozen once released.
--
-- No bad row stops anyone: interactions the worker cannot fold are refused
-- at the door (rerankdb.check_interaction) or, if one still fails, set aside
-- in the queue with its error and retried with backoff, while the rest of
-- its batch goes through.  A user whose log changes (deletes, updates) is
-- rebuilt by the worker.

-- A queued interaction that failed to fold: how often, why, and when it is
-- due again (the same columns as rerankdb.item_queue).
alter table rerankdb.interaction_queue
    add column attempts integer not null default 0,
    add column last_error text null,
    add column not_before timestamptz not null default '-infinity';

-- How far in the future an occurred_at may be (clock skew between the
-- application's servers and the database).
alter table rerankdb.settings
    add column future_tolerance interval not null default '5 minutes'
        check (future_tolerance >= interval '0' and isfinite(future_tolerance));

-- Bounded weights, so that no sum of them can overflow a float32 vector.
-- NOT VALID: rows written before this revision are not checked here (the
-- worker sets aside any that cannot be folded), new rows are.
alter table rerankdb.interactions
    add constraint interactions_weight_within_1e6 check (weight between -1e6 and 1e6) not valid;
alter table rerankdb.interaction_kinds
    add constraint interaction_kinds_weight_within_1e6 check (weight between -1e6 and 1e6) not valid;

create trigger interactions_check
    before insert or update of occurred_at, weight, kind on rerankdb.interactions
    for each row execute function rerankdb.check_interaction();

-- Users whose interactions were deleted or changed after they were folded.
-- enqueued_at changes with every new change, so a rebuild dequeues only the
-- request it read (a change committed meanwhile stays queued); attempts,
-- last_error and not_before as in the other queues.
create table rerankdb.user_rebuild_queue (
    user_id bigint primary key,
    enqueued_at timestamptz not null default clock_timestamp(),
    attempts integer not null default 0,
    last_error text null,
    not_before timestamptz not null default '-infinity'
);
alter table rerankdb.user_rebuild_queue
    set (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 5000);
create trigger interactions_rebuild_user
    after update of user_id, item_id, kind, weight, context, occurred_at or delete on rerankdb.interactions
    for each row execute function rerankdb.enqueue_user_rebuild();
create trigger interactions_rebuild_notify
    after update or delete on rerankdb.interactions
    for each statement execute function rerankdb.notify_worker();
