-- rerankdb 0010, after its functions: each role executes exactly the
-- functions it calls, by list (revision 0005 gave rerankdb_worker every
-- function, forget_user included: it could erase any user's history though
-- it may not write the log).  Frozen once released.
--
--   rerankdb_app     the read functions, bring-your-own vectors, forget_user,
--                    counts, interaction_problem (rerankdb load checks rows)
--   rerankdb_reader  the read functions
--   rerankdb_worker  what rerankdb worker, train, tune, rebuild, compact and
--                    status call: dimension, counts, refresh_centers,
--                    refresh_collab_keys
-- Trigger functions need no grant: PostgreSQL checks EXECUTE on a trigger
-- function when the trigger is created, not when it fires, so the roles that
-- write the tables fire them without EXECUTE on them.  Functions that a
-- granted function calls run with their owner's rights (security definer)
-- or need no grant either.  README, "Roles", lists the same table and
-- tests/test_roles.py compares it with the database.
revoke execute on all functions in schema rerankdb from rerankdb_app, rerankdb_reader, rerankdb_worker;
grant execute on function
    rerankdb.rerank(bigint, bigint[], integer, double precision, bigint[], boolean),
    rerankdb.rerank_scored(bigint, bigint[], double precision[], double precision, integer, double precision, bigint[], boolean),
    rerankdb.recommend(bigint, integer, boolean),
    rerankdb.similar_items(bigint, integer),
    rerankdb.explain(bigint, bigint[], integer),
    rerankdb.dimension()
    to rerankdb_app, rerankdb_reader;
grant execute on function
    rerankdb.forget_user(bigint),
    rerankdb.set_item_vectors(bigint[], vector[]),
    rerankdb.set_user_vectors(bigint[], vector[]),
    rerankdb.counts(),
    rerankdb.interaction_problem(timestamptz, double precision)
    to rerankdb_app;
grant execute on function
    rerankdb.dimension(),
    rerankdb.counts(),
    rerankdb.refresh_centers(integer),
    rerankdb.refresh_collab_keys()
    to rerankdb_worker;
