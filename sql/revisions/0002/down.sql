-- rerankdb 0002 downgrade: back to the core schema of 0001.
drop view rerankdb.status;
drop trigger items_enqueue_insert on rerankdb.items;
drop trigger items_enqueue_update on rerankdb.items;
drop trigger items_notify on rerankdb.items;
drop trigger interactions_enqueue on rerankdb.interactions;
drop trigger interactions_notify on rerankdb.interactions;
drop trigger item_vectors_release_deferred on rerankdb.item_vectors;
drop table rerankdb.worker_state, rerankdb.user_state, rerankdb.interaction_queue, rerankdb.item_queue;
drop function rerankdb.enqueue_item(), rerankdb.enqueue_interaction(),
    rerankdb.release_deferred(), rerankdb.notify_worker();
alter table rerankdb.item_vectors drop column content_sha256, drop column model;
