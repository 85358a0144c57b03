-- Statements of rerankdb/demo.py.  Loaded once by rerankdb.sqlfiles.queries("demo");
-- each "-- name:" starts a statement.

-- name: long_term_only
-- In a transaction the demo rolls back: nobody else sees it.
update rerankdb.settings set short_weight = 0, collab_short_weight = 0

-- name: top
select item_id from rerankdb.rerank(%(user)s, %(candidates)s, %(k)s)
