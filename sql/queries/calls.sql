-- The reads of rerankdb/calls.py, which Client and AsyncClient both run:
-- each calls one SQL function (its contract is in sql/functions/).  Loaded
-- once by rerankdb.sqlfiles.queries("calls"); each "-- name:" starts a
-- statement.

-- name: rerank
select * from rerankdb.rerank(%(user)s, %(candidates)s, %(k)s, %(diversity)s::float8,
                              %(context)s::bigint[], %(exclude_seen)s)

-- name: rerank_scored
select * from rerankdb.rerank_scored(%(user)s, %(candidates)s, %(scores)s::float8[], %(weight)s, %(k)s,
                                     %(diversity)s::float8, %(context)s::bigint[], %(exclude_seen)s)

-- name: explain
select * from rerankdb.explain(%(user)s, %(items)s, %(n)s)

-- name: recommend
select * from rerankdb.recommend(%(user)s, %(k)s, %(exclude_seen)s)

-- name: similar_items
select * from rerankdb.similar_items(%(item)s, %(k)s)
