-- rerankdb 0013: ready for Citus.  Frozen once released.
--
-- Keys that include user_id, right on one node as on Citus (which enforces a
-- key, or a foreign key between distributed tables, only when it includes
-- the distribution column): the log and its queue are keyed by
-- (interaction_id, user_id), interaction_id first so that a lookup by id
-- alone keeps its index.  The queue's foreign key follows its row when a
-- user_id of the log is changed (on one node; Citus forbids changing it).
alter table rerankdb.interaction_queue drop constraint interaction_queue_interaction_id_fkey;
alter table rerankdb.interaction_queue drop constraint interaction_queue_pkey;
alter table rerankdb.interactions drop constraint interactions_pkey;
alter table rerankdb.interactions add constraint interactions_pkey primary key (interaction_id, user_id);
alter table rerankdb.interaction_queue add constraint interaction_queue_pkey primary key (interaction_id, user_id);
alter table rerankdb.interaction_queue add constraint interaction_queue_interaction_id_fkey
    foreign key (interaction_id, user_id) references rerankdb.interactions (interaction_id, user_id)
    on delete cascade on update cascade;

-- A fold claims the users of one partition: a range of hashint8(user_id), the
-- hash Citus distributes a bigint by (on Citus a partition is a shard; on one
-- node, 16 equal ranges).  Was hashint8(user_id) & 15 (revision 0009), whose
-- partitions span every Citus shard.
drop index rerankdb.interaction_queue_partition_idx;
create index interaction_queue_partition_idx
    on rerankdb.interaction_queue ((hashint8(user_id)), interaction_id);

-- Vectors given by the application (rerankdb.set_item_vectors) record the
-- SHA-256 of the text they stand for, as the worker's do: on Citus, where no
-- trigger queues a changed text, the worker finds the items to embed by it.
-- Those given before stand for the text as it is now.
update rerankdb.item_vectors v
   set content_sha256 = sha256(convert_to(i.content, 'UTF8'))
  from rerankdb.items i
 where i.item_id = v.item_id and v.content_sha256 is null;
