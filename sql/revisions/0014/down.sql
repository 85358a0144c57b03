-- rerankdb 0014, undone (before the earlier versions of its functions are
-- back).  Frozen once released.
drop function rerankdb.nearest(vector, vector, vector, integer, bigint, bigint);
drop function rerankdb.refresh_hybrid_keys();
drop function rerankdb.swap_in_next(text, text);
drop function rerankdb.hybrid_key(vector, double precision, vector, double precision, integer, vector, double precision, integer);
drop table rerankdb.hybrid_keys_fresh;
drop table rerankdb.hybrid_meta;
drop table rerankdb.hybrid_keys;
