-- rerankdb 0012: the log is checked and queued in sets.  Frozen once released.
--
-- An insert into rerankdb.interactions was checked and queued through two
-- row triggers, and a delete queued a rebuild of each row's user the same
-- way: a load or a compaction of a million rows made millions of trigger
-- calls.  Now each statement checks and queues what it inserted, or queues
-- the rebuilds of what it deleted, in one set operation over its transition
-- table (rerankdb.check_interactions, rerankdb.enqueue_interactions,
-- rerankdb.enqueue_user_rebuilds); a row is checked alone only where its
-- own values may be refused.  An update is still checked and queued
-- row by row (a trigger with a column list cannot see transition tables;
-- updates of the log are rare).
-- The check of an inserted row: the row trigger runs only for a row whose own
-- values may be a problem (a cheap WHEN: an infinite or future time, a weight
-- beyond +-1e6), before the row's constraints, as before; the statement
-- trigger checks, in one set query, what the WHEN cannot see (a kind's
-- weight).  An update is checked row by row, as before.
drop trigger interactions_check on rerankdb.interactions;
create trigger interactions_check
    before insert on rerankdb.interactions
    for each row
    when (not isfinite(new.occurred_at) or new.occurred_at > now() or abs(new.weight) > 1e6)
    execute function rerankdb.check_interaction();
create trigger interactions_check_update
    before update of occurred_at, weight, kind on rerankdb.interactions
    for each row execute function rerankdb.check_interaction();
create trigger interactions_check_inserted
    after insert on rerankdb.interactions
    referencing new table as inserted
    for each statement execute function rerankdb.check_interactions();

drop trigger interactions_enqueue on rerankdb.interactions;
create trigger interactions_enqueue
    after insert on rerankdb.interactions
    referencing new table as inserted
    for each statement execute function rerankdb.enqueue_interactions();
drop function rerankdb.enqueue_interaction();

drop trigger interactions_rebuild_user on rerankdb.interactions;
create trigger interactions_rebuild_user
    after update of user_id, item_id, kind, weight, context, occurred_at on rerankdb.interactions
    for each row execute function rerankdb.enqueue_user_rebuild();
create trigger interactions_rebuild_deleted
    after delete on rerankdb.interactions
    referencing old table as deleted
    for each statement execute function rerankdb.enqueue_user_rebuilds();
