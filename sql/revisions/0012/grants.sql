-- rerankdb 0012, after its functions: the new ones are revoked from PUBLIC
-- (0005's rule: nobody by default; rerank calls mmr as the owner, and
-- PostgreSQL checks EXECUTE on a trigger function when the trigger is
-- created, not when it fires).  Frozen once released.
revoke execute on function
    rerankdb.mmr(bigint[], double precision[], double precision[], boolean, double precision, integer),
    rerankdb.enqueue_interactions(),
    rerankdb.enqueue_user_rebuilds(),
    rerankdb.check_interactions(),
    rerankdb.refuse_interaction(timestamptz, text)
    from public;
