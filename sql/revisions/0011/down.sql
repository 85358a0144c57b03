-- rerankdb 0011, undone: the sequence space goes (its models, vectors and
-- weight).  Frozen once released.
drop index rerankdb.interactions_user_time_idx;
alter table rerankdb.settings drop column sequence_weight;
alter table rerankdb.user_vectors drop column seq, drop column seq_items, drop column seq_attention;
alter table rerankdb.item_rank drop column seq;
drop table rerankdb.sequence_model;
