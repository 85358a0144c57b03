-- rerankdb 0003 downgrade: back to text vectors only (0002).
drop table rerankdb.settings;
alter table rerankdb.item_vectors drop column collab, drop column collab_support;
alter table rerankdb.user_vectors drop column collab;
alter table rerankdb.user_state drop column collab_sum;
