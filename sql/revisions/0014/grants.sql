-- rerankdb 0014, after its functions: the new ones are revoked from PUBLIC
-- (0005's rule: nobody by default); the worker role builds the hybrid index
-- after a training or a tune.  Frozen once released.
revoke execute on function
    rerankdb.nearest(vector, vector, vector, integer, bigint, bigint),
    rerankdb.hybrid_key(vector, double precision, vector, double precision, integer, vector, double precision, integer),
    rerankdb.swap_in_next(text, text),
    rerankdb.refresh_hybrid_keys()
    from public;
grant execute on function rerankdb.refresh_hybrid_keys() to rerankdb_worker;
