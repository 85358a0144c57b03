-- Statements of rerankdb/worker.py.  Loaded once by
-- rerankdb.sqlfiles.queries("worker"); each "-- name:" starts a statement.

-- name: dimension
select rerankdb.dimension()

-- name: listen
-- The channel rerankdb.notify_worker() notifies at the commit of any insert
-- into items or interactions.
listen rerankdb_work
