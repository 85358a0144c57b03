-- rerankdb 0016, undone: the triggers go and the foreign keys come back:
-- the queue's as revision 0013 made it (queue rows whose log row is gone are
-- dropped first: the key would refuse them), the kinds' as revision 0001
-- made it.  0012's check_interaction and check_interactions are restored
-- after this file.  Frozen once released.
drop trigger interaction_kinds_deleted on rerankdb.interaction_kinds;
drop trigger interaction_kinds_truncated on rerankdb.interaction_kinds;
drop trigger interaction_kinds_renamed on rerankdb.interaction_kinds;
drop function rerankdb.check_kinds();
alter table rerankdb.interactions add constraint interactions_kind_fkey
    foreign key (kind) references rerankdb.interaction_kinds (kind) on update cascade;
drop trigger interactions_unqueue_deleted on rerankdb.interactions;
drop trigger interactions_unqueue_truncated on rerankdb.interactions;
drop trigger interactions_unqueue_updated on rerankdb.interactions;
drop function rerankdb.unqueue_interactions();
delete from rerankdb.interaction_queue q
where not exists (select 1 from rerankdb.interactions i
                  where i.interaction_id = q.interaction_id and i.user_id = q.user_id);
alter table rerankdb.interaction_queue add constraint interaction_queue_interaction_id_fkey
    foreign key (interaction_id, user_id) references rerankdb.interactions (interaction_id, user_id)
    on delete cascade on update cascade;
