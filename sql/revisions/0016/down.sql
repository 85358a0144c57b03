-- rerankdb 0016, undone: the triggers go and the foreign key comes back, as
-- revision 0013 made it (queue rows whose log row is gone are dropped first:
-- the key would refuse them).  Frozen once released.
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
