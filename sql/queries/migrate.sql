-- Statements of rerankdb/migrate.py (the Alembic glue).  Loaded once by
-- rerankdb.sqlfiles.queries("migrate"); each "-- name:" starts a statement.

-- name: is_installed
select to_regclass('rerankdb.config') is not null

-- name: installed_dim
-- The dimension rerankdb was installed with (ask is_installed first).
select dim from rerankdb.config

-- name: installed_storage
-- How item text vectors are stored: NULL before revision 0008 (ask is_installed first;
-- through jsonb, so that it reads without the column too).
select to_jsonb(c) ->> 'storage' from rerankdb.config c

-- name: lock
-- One migration at a time per database: two `rerankdb migrate` (or alembic) runs
-- that start together would both find no version table and both create the
-- schema.  A session lock, held until the migration's connection closes.
select pg_advisory_lock(hashtextextended('rerankdb migrate', 0))
