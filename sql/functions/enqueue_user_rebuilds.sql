-- rerankdb.enqueue_user_rebuilds(): AFTER DELETE trigger on
-- rerankdb.interactions, once per statement (revision 0012; an update still
-- queues through the row trigger rerankdb.enqueue_user_rebuild).  A user's
-- vectors are sums over their log: every user with a row the statement
-- deleted (its transition table, "deleted") is queued for the worker to
-- rebuild from the log as it is now, in one upsert (users in id order, so
-- that two deleting transactions lock them in the same order).  A user
-- already queued is queued anew (enqueued_at, attempts reset), so that a
-- rebuild that read the log before this change does not dequeue it.
-- A compaction deleting a million rows costs one set operation here.
create or replace function rerankdb.enqueue_user_rebuilds() returns trigger
language plpgsql
security definer
set search_path = pg_catalog
as $fn$
begin
    insert into rerankdb.user_rebuild_queue as q (user_id)
    select distinct d.user_id from deleted d
    order by d.user_id
    on conflict (user_id) do update
        set enqueued_at = excluded.enqueued_at, attempts = 0, last_error = null, not_before = '-infinity';
    return null;
end
$fn$;
