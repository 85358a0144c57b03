-- rerankdb.enqueue_interactions(): AFTER INSERT trigger on
-- rerankdb.interactions, once per statement (revision 0012; before it, the
-- row trigger rerankdb.enqueue_interaction), or once per row on Citus, which
-- allows only row triggers on a distributed table (revision 0013; the
-- layout, sql/citus/layout.sql, creates it so).  Queues every interaction the
-- statement inserted (its transition table, "inserted") for folding into its
-- user's vectors, in one insert, in the same transaction as the interactions
-- themselves: committed together or not at all.  A load of a million rows
-- costs one set operation here, not a million trigger calls.
-- A bulk load (revision 0016: rerankdb load interactions sets
-- rerankdb.queue_by_user to on for its insert, 10,000 rows or more) queues a
-- user whose rows it brings are at least as many as their state counts
-- already for one rebuild instead (rerankdb.user_rebuild_queue: the worker
-- reads their log once, as after a delete), and the other users' rows as
-- above.  A rebuild counts each row of the log once, as the folds would.
-- It sets rerankdb.users_queued (for the transaction) to how many users it
-- queued so.
-- The queue row carries the user: workers claim by partition of users, so
-- that two workers never fold into the same user at once.
-- Security: runs with its owner's rights (security definer, search_path
-- pinned, names schema-qualified), so writers need no access to the queue.
create or replace function rerankdb.enqueue_interactions() returns trigger
language plpgsql
security definer
set search_path = pg_catalog
as $fn$
declare
    by_user bigint[];
begin
    if tg_level = 'ROW' then
        insert into rerankdb.interaction_queue (interaction_id, item_id, user_id)
        values (new.interaction_id, new.item_id, new.user_id);
        return null;
    end if;
    if current_setting('rerankdb.queue_by_user', true) is distinct from 'on' then
        insert into rerankdb.interaction_queue (interaction_id, item_id, user_id)
        select n.interaction_id, n.item_id, n.user_id from inserted n;
        return null;
    end if;
    select array_agg(u.user_id order by u.user_id) into by_user
    from (select n.user_id, count(*) as rows from inserted n group by n.user_id) u
    left join rerankdb.user_state s on s.user_id = u.user_id
    where u.rows >= coalesce(s.interactions, 0);
    perform set_config('rerankdb.users_queued', coalesce(cardinality(by_user), 0)::text, true);
    insert into rerankdb.user_rebuild_queue as q (user_id)
    select b.user_id from unnest(by_user) as b(user_id)
    on conflict (user_id) do update
        set enqueued_at = excluded.enqueued_at, attempts = 0, last_error = null, not_before = '-infinity';
    insert into rerankdb.interaction_queue (interaction_id, item_id, user_id)
    select n.interaction_id, n.item_id, n.user_id
    from inserted n
    left join unnest(by_user) as b(user_id) on b.user_id = n.user_id
    where b.user_id is null;
    return null;
end
$fn$;
