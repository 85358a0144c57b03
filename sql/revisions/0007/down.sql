-- rerankdb 0007, downgrade: back to 0006's functions (recreated after this
-- by the revision, then granted by down_grants.sql).  Frozen once released.
drop function rerankdb.rerank(bigint, bigint[], integer, double precision, bigint[], boolean);
drop function rerankdb.rerank_scored(bigint, bigint[], double precision[], double precision, integer, double precision, bigint[], boolean);
drop function rerankdb.explain(bigint, bigint[], integer);
drop function rerankdb.diversify(bigint[], double precision[], double precision, integer, boolean);
drop function rerankdb.nearest(vector, vector, integer, bigint, bigint);
drop function rerankdb.refresh_collab_keys();
drop table rerankdb.collab_keys;
drop table if exists rerankdb.collab_keys_next;
drop function rerankdb.collab_key(vector);
alter table rerankdb.settings drop column context_items_weight;
