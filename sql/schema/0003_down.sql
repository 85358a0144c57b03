-- rerankdb 0003 downgrade: back to text vectors only (0002).
drop table rerankdb.settings;
drop table rerankdb.item_collab;
alter table rerankdb.user_vectors drop column collab;
alter table rerankdb.user_state drop column collab_sum;
