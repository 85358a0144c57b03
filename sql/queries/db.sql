-- Statements of rerankdb/db.py: creating and dropping databases (the demo,
-- the eval, the benchmarks, the embedded server and the tests use these).
-- {name} and {template} are identifiers, filled in with psycopg.sql.Identifier,
-- never by string formatting.  Loaded once by rerankdb.sqlfiles.queries("db").

-- name: database_exists
select 1 from pg_database where datname = %(name)s

-- name: create_database
create database {name}

-- name: create_database_from_template
create database {name} template {template}

-- name: drop_database
-- Ends the database's sessions first.
drop database if exists {name} with (force)

-- name: vector_schema
-- Where the pgvector extension is installed, and whether that schema is on
-- the session's search path.
select n.nspname, n.nspname = any (pg_catalog.current_schemas(false))
from pg_catalog.pg_extension e
join pg_catalog.pg_namespace n on n.oid = e.extnamespace
where e.extname = 'vector'

-- name: add_to_search_path
-- For this session: pgvector's schema after the ones already there.
select pg_catalog.set_config(
    'search_path', pg_catalog.current_setting('search_path') || ', ' || pg_catalog.quote_ident(%(schema)s), false
)
