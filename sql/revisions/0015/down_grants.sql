-- rerankdb 0015, undone, after the earlier versions of its functions are
-- back: the old mmr, created again, is the owner's only (as 0012 left it).
-- Frozen once released.
revoke execute on function
    rerankdb.mmr(bigint[], double precision[], double precision[], boolean, double precision, integer)
    from public;
