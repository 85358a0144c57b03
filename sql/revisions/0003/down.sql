-- rerankdb 0003 downgrade: back to text vectors only (0002).
drop trigger item_vectors_sync_rank on rerankdb.item_vectors;
drop trigger item_vectors_unsync_rank on rerankdb.item_vectors;
drop function rerankdb.sync_item_rank();
drop function rerankdb.rerank_scored(bigint, bigint[], double precision[], double precision, integer);
drop table rerankdb.settings, rerankdb.item_rank;
alter table rerankdb.user_vectors drop column collab;
alter table rerankdb.user_state drop column collab_sum;
