-- rerankdb.enqueue_interaction(): AFTER INSERT trigger on rerankdb.interactions.
-- Queues the interaction for folding into its user's vector, in the same
-- transaction as the interaction itself: committed together or not at all.
create or replace function rerankdb.enqueue_interaction() returns trigger
language plpgsql
set search_path = pg_catalog
as $fn$
begin
    insert into rerankdb.interaction_queue (interaction_id, item_id)
    values (new.interaction_id, new.item_id);
    return null;
end
$fn$;
