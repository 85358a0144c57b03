-- Statements of rerankdb/citus.py: setting up the nodes of a local Citus
-- cluster.  Loaded once by rerankdb.sqlfiles.queries("citus"); each
-- "-- name:" starts a statement.

-- name: create_citus
create extension if not exists citus

-- name: create_vector
create extension if not exists vector

-- name: set_coordinator
-- The coordinator's own address, for the workers (and its reference copies).
select citus_set_coordinator_host('127.0.0.1', %(port)s)

-- name: node_ports
select nodeport from pg_dist_node

-- name: add_node
select citus_add_node('127.0.0.1', %(port)s)
