-- rerankdb.enqueue_user_rebuild(): AFTER UPDATE row trigger on
-- rerankdb.interactions (a delete queues per statement:
-- rerankdb.enqueue_user_rebuilds, revision 0012).  A user's vector is a sum
-- over their log: when an interaction is changed, the user (old and new, if
-- user_id changed) is queued for the worker to rebuild from the log as it is now.
-- A user already queued is queued anew (enqueued_at, attempts reset), so that
-- a rebuild that read the log before this change does not dequeue it.
create or replace function rerankdb.enqueue_user_rebuild() returns trigger
language plpgsql
security definer
set search_path = pg_catalog
as $fn$
begin
    insert into rerankdb.user_rebuild_queue as q (user_id) values (old.user_id)
    on conflict (user_id) do update
        set enqueued_at = clock_timestamp(), attempts = 0, last_error = null, not_before = '-infinity';
    if tg_op = 'UPDATE' and new.user_id is distinct from old.user_id then
        insert into rerankdb.user_rebuild_queue as q (user_id) values (new.user_id)
        on conflict (user_id) do update
            set enqueued_at = clock_timestamp(), attempts = 0, last_error = null, not_before = '-infinity';
    end if;
    return null;
end
$fn$;
