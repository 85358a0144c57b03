-- rerankdb 0014, undone, after the earlier versions of its functions are
-- back: the old nearest, created again, is the owner's only (as 0010 left it).
-- Frozen once released.
revoke execute on function rerankdb.nearest(vector, vector, integer, bigint, bigint) from public;
