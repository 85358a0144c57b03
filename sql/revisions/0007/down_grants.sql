-- rerankdb 0007, downgrade, after 0006's functions are back: their grants
-- (dropping a function drops its grants).  Frozen once released.
revoke execute on function
    rerankdb.rerank(bigint, bigint[], integer),
    rerankdb.rerank_scored(bigint, bigint[], double precision[], double precision, integer),
    rerankdb.nearest(vector, integer, bigint, bigint)
    from public;
grant execute on function
    rerankdb.rerank(bigint, bigint[], integer),
    rerankdb.rerank_scored(bigint, bigint[], double precision[], double precision, integer)
    to rerankdb_app, rerankdb_reader;
grant execute on function
    rerankdb.rerank(bigint, bigint[], integer),
    rerankdb.rerank_scored(bigint, bigint[], double precision[], double precision, integer),
    rerankdb.nearest(vector, integer, bigint, bigint)
    to rerankdb_worker;
