-- rerankdb 0008: bulk loading (rerankdb load) and the storage option.
-- Frozen once released.
--
-- A load checks a file's interactions against the log's own rule by line
-- before writing any (rerankdb.interaction_problem, the function behind the
-- door rerankdb.check_interaction): the app role, which writes the log, may
-- ask it too.
grant execute on function rerankdb.interaction_problem(timestamptz, double precision) to rerankdb_app;

-- How item text vectors are stored: 'vector' (4 bytes a component) or
-- 'halfvec' (2 bytes: half the memory of the two biggest tables and of the
-- HNSW index).  Chosen at install (-x storage=, RERANKDB_STORAGE); the
-- revision fills it in before storage.sql acts on it.
alter table rerankdb.config
    add column storage text not null default 'vector' check (storage in ('vector', 'halfvec'));
-- The install-time facts (dimension, storage) are no secret: the app role's
-- status shows them.
grant select on rerankdb.config to rerankdb_app;
