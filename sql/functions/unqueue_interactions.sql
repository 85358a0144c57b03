-- rerankdb.unqueue_interactions(): what the queue's foreign key on the log
-- did before revision 0016, in sets.  A queued interaction leaves the queue
-- with its row of the log:
--   AFTER DELETE, once per statement: the rows the statement deleted (its
--   transition table, "deleted"), in one join; a compaction of a million
--   rows costs one set operation, not a million cascades;
--   AFTER TRUNCATE: the whole queue, truncated too (as TRUNCATE ... CASCADE did);
--   AFTER UPDATE of its key or item, once per row (updates of the log are
--   rare): the queue row follows it (the user is queued for a rebuild too,
--   by rerankdb.enqueue_user_rebuild).
-- The queue is filled by the log's insert trigger (rerankdb.enqueue_interactions,
-- the rows the statement inserted, invisible to every other transaction until
-- it commits) and by rebuilds, which drop a queue row whose log row is gone
-- (sql/queries/user_refresh.sql, drop_orphans_of_users).
-- On Citus (row triggers only) the layout drops these triggers and adds the
-- foreign key back, which Citus enforces shard by shard.
create or replace function rerankdb.unqueue_interactions() returns trigger
language plpgsql
security definer
set search_path = pg_catalog
as $fn$
begin
    if tg_op = 'DELETE' then
        delete from rerankdb.interaction_queue q
        using deleted d
        where q.interaction_id = d.interaction_id and q.user_id = d.user_id;
    elsif tg_op = 'TRUNCATE' then
        truncate rerankdb.interaction_queue;
    else
        update rerankdb.interaction_queue
           set interaction_id = new.interaction_id, user_id = new.user_id, item_id = new.item_id
         where interaction_id = old.interaction_id and user_id = old.user_id;
    end if;
    return null;
end
$fn$;
