-- rerankdb 0008: bulk loading (rerankdb load).  Frozen once released.
--
-- A load checks a file's interactions against the log's own rule by line
-- before writing any (rerankdb.interaction_problem, the function behind the
-- door rerankdb.check_interaction): the app role, which writes the log, may
-- ask it too.
grant execute on function rerankdb.interaction_problem(timestamptz, double precision) to rerankdb_app;
