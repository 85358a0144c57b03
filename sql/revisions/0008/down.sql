-- rerankdb 0008, undone.  Frozen once released.
revoke execute on function rerankdb.interaction_problem(timestamptz, double precision) from rerankdb_app;
