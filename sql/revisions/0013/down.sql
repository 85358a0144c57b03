-- rerankdb 0013, undone (after the earlier versions of its functions are
-- back).  Frozen once released.
drop index rerankdb.interaction_queue_partition_idx;
create index interaction_queue_partition_idx
    on rerankdb.interaction_queue ((hashint8(user_id) & 15), interaction_id);

alter table rerankdb.interaction_queue drop constraint interaction_queue_interaction_id_fkey;
alter table rerankdb.interaction_queue drop constraint interaction_queue_pkey;
alter table rerankdb.interactions drop constraint interactions_pkey;
alter table rerankdb.interactions add constraint interactions_pkey primary key (interaction_id);
alter table rerankdb.interaction_queue add constraint interaction_queue_pkey primary key (interaction_id);
alter table rerankdb.interaction_queue add constraint interaction_queue_interaction_id_fkey
    foreign key (interaction_id) references rerankdb.interactions (interaction_id) on delete cascade;
