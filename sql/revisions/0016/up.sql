-- rerankdb 0016: the log's queue without a foreign key.  The key checked
-- every queued row (a lookup in the log per row of a load) and cascaded every
-- deleted one (a lookup in the queue per row of a compaction); both are done
-- in sets now by rerankdb.unqueue_interactions (created just before this file).
-- Frozen once released.
alter table rerankdb.interaction_queue drop constraint interaction_queue_interaction_id_fkey;
create trigger interactions_unqueue_deleted
    after delete on rerankdb.interactions
    referencing old table as deleted
    for each statement execute function rerankdb.unqueue_interactions();
create trigger interactions_unqueue_truncated
    after truncate on rerankdb.interactions
    for each statement execute function rerankdb.unqueue_interactions();
create trigger interactions_unqueue_updated
    after update of interaction_id, user_id, item_id on rerankdb.interactions
    for each row
    when ((new.interaction_id, new.user_id, new.item_id) is distinct from (old.interaction_id, old.user_id, old.item_id))
    execute function rerankdb.unqueue_interactions();
