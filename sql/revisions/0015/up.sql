-- rerankdb 0015: MMR in one read.  rerankdb.mmr takes the candidates in the
-- order it takes them in (by bound, from the caller's one read) and returns
-- the indexes it chooses; a new signature, so the old one goes first.
-- Frozen once released.
drop function rerankdb.mmr(bigint[], double precision[], double precision[], boolean, double precision, integer);
