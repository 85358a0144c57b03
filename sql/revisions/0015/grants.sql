-- rerankdb 0015, after its functions: the new mmr is revoked from PUBLIC
-- (0005's rule: nobody by default; rerank and diversify call it as the
-- owner).  Frozen once released.
revoke execute on function
    rerankdb.mmr(bigint[], double precision[], bigint[], double precision[], double precision, double precision, double precision, integer)
    from public;
