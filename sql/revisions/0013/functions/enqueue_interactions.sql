-- rerankdb.enqueue_interactions(): AFTER INSERT trigger on
-- rerankdb.interactions, once per statement (revision 0012; before it, the
-- row trigger rerankdb.enqueue_interaction), or once per row on Citus, which
-- allows only row triggers on a distributed table (revision 0013; the
-- layout, sql/citus/layout.sql, creates it so).  Queues every interaction the
-- statement inserted (its transition table, "inserted") for folding into its
-- user's vectors, in one insert, in the same transaction as the interactions
-- themselves: committed together or not at all.  A load of a million rows
-- costs one set operation here, not a million trigger calls.
-- The queue row carries the user: workers claim by partition of users, so
-- that two workers never fold into the same user at once.
-- Security: runs with its owner's rights (security definer, search_path
-- pinned, names schema-qualified), so writers need no access to the queue.
create or replace function rerankdb.enqueue_interactions() returns trigger
language plpgsql
security definer
set search_path = pg_catalog
as $fn$
begin
    if tg_level = 'ROW' then
        insert into rerankdb.interaction_queue (interaction_id, item_id, user_id)
        values (new.interaction_id, new.item_id, new.user_id);
        return null;
    end if;
    insert into rerankdb.interaction_queue (interaction_id, item_id, user_id)
    select n.interaction_id, n.item_id, n.user_id from inserted n;
    return null;
end
$fn$;
