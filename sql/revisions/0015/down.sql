-- rerankdb 0015, undone (before the earlier versions of its functions are
-- back): the new mmr goes; 0012's is created again by the downgrade.
-- Frozen once released.
drop function rerankdb.mmr(bigint[], double precision[], bigint[], double precision[], double precision, double precision, double precision, integer);
