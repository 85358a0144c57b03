-- rerankdb 0007, after its functions: who may call them (0005's rule:
-- nobody by default, then each role what it needs).  Frozen once released.
revoke execute on function
    rerankdb.rerank(bigint, bigint[], integer, double precision, bigint[], boolean),
    rerankdb.rerank_scored(bigint, bigint[], double precision[], double precision, integer, double precision, bigint[], boolean),
    rerankdb.explain(bigint, bigint[], integer),
    rerankdb.diversify(bigint[], double precision[], double precision, integer, boolean),
    rerankdb.collab_key(vector),
    rerankdb.refresh_collab_keys(),
    rerankdb.nearest(vector, vector, integer, bigint, bigint)
    from public;
grant execute on function
    rerankdb.rerank(bigint, bigint[], integer, double precision, bigint[], boolean),
    rerankdb.rerank_scored(bigint, bigint[], double precision[], double precision, integer, double precision, bigint[], boolean),
    rerankdb.explain(bigint, bigint[], integer)
    to rerankdb_app, rerankdb_reader;
grant execute on function
    rerankdb.rerank(bigint, bigint[], integer, double precision, bigint[], boolean),
    rerankdb.rerank_scored(bigint, bigint[], double precision[], double precision, integer, double precision, bigint[], boolean),
    rerankdb.explain(bigint, bigint[], integer),
    rerankdb.diversify(bigint[], double precision[], double precision, integer, boolean),
    rerankdb.collab_key(vector),
    rerankdb.refresh_collab_keys(),
    rerankdb.nearest(vector, vector, integer, bigint, bigint)
    to rerankdb_worker;
