-- rerankdb 0016: the log without foreign keys, whose checks ran one row at a
-- time.  The queue's key checked every queued row (a lookup in the log per
-- row of a load) and cascaded every deleted one (a lookup in the queue per
-- row of a compaction); both are done in sets now by
-- rerankdb.unqueue_interactions (created just before this file).
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

-- The log's foreign key on the kinds checked every inserted row (a lookup
-- per row of a load); rerankdb.check_interactions (a statement's kinds, in
-- one query) and rerankdb.check_interaction (an update's new kind) check
-- them now, and rerankdb.check_kinds keeps the key's other rules: a kind
-- in use is not deleted, nor the kinds truncated, and a renamed kind is
-- renamed in the log.  All three are created just before this file.
alter table rerankdb.interactions drop constraint interactions_kind_fkey;
create trigger interaction_kinds_deleted
    after delete on rerankdb.interaction_kinds
    referencing old table as deleted
    for each statement execute function rerankdb.check_kinds();
create trigger interaction_kinds_truncated
    before truncate on rerankdb.interaction_kinds
    for each statement execute function rerankdb.check_kinds();
create trigger interaction_kinds_renamed
    after update of kind on rerankdb.interaction_kinds
    for each row when (new.kind is distinct from old.kind)
    execute function rerankdb.check_kinds();
