-- rerankdb.enqueue_interaction(): AFTER INSERT trigger on rerankdb.interactions.
-- Queues the interaction for folding into its user's vector, in the same
-- transaction as the interaction itself: committed together or not at all.
-- The queue row carries the user (revision 0009): workers claim by partition
-- of users, so that two workers never fold into the same user at once.
-- Security: runs with its owner's rights (security definer, search_path
-- pinned, names schema-qualified), so callers need EXECUTE on it and no
-- access to the tables it reads or writes (README, "Roles").
create or replace function rerankdb.enqueue_interaction() returns trigger
language plpgsql
security definer
set search_path = pg_catalog
as $fn$
begin
    insert into rerankdb.interaction_queue (interaction_id, item_id, user_id)
    values (new.interaction_id, new.item_id, new.user_id);
    return null;
end
$fn$;
