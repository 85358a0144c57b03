-- rerankdb 0012, undone (after the earlier versions of its functions are
-- back, rerankdb.enqueue_interaction among them, and check_interaction
-- without rerankdb.refuse_interaction): the row triggers return,
-- the functions it added go.  Frozen once released.
drop trigger interactions_check_inserted on rerankdb.interactions;
drop trigger interactions_check_update on rerankdb.interactions;
drop trigger interactions_check on rerankdb.interactions;
create trigger interactions_check
    before insert or update of occurred_at, weight, kind on rerankdb.interactions
    for each row execute function rerankdb.check_interaction();
drop function rerankdb.check_interactions();
drop function rerankdb.refuse_interaction(timestamptz, text);

drop trigger interactions_enqueue on rerankdb.interactions;
create trigger interactions_enqueue
    after insert on rerankdb.interactions
    for each row execute function rerankdb.enqueue_interaction();
drop function rerankdb.enqueue_interactions();
revoke execute on function rerankdb.enqueue_interaction() from public;  -- created again: nobody by default

drop trigger interactions_rebuild_deleted on rerankdb.interactions;
drop trigger interactions_rebuild_user on rerankdb.interactions;
create trigger interactions_rebuild_user
    after update of user_id, item_id, kind, weight, context, occurred_at or delete on rerankdb.interactions
    for each row execute function rerankdb.enqueue_user_rebuild();
drop function rerankdb.enqueue_user_rebuilds();

drop function rerankdb.mmr(bigint[], double precision[], double precision[], boolean, double precision, integer);
