-- rerankdb 0005: least-privilege roles.  Frozen once released.
--
--   rerankdb_app     write items, interactions and kinds; call every read
--                    function, bring its own vectors, forget users; read
--                    rerankdb.status
--   rerankdb_reader  call the read functions only (rerank, rerank_scored,
--                    recommend, similar_items, dimension)
--   rerankdb_worker  what the worker needs: read the log, write the vectors,
--                    the state and the queues
-- NOLOGIN roles, created if missing (they are the cluster's, shared by every
-- database that installs rerankdb, and kept by a downgrade); a DBA grants
-- them to real users: grant rerankdb_reader to web;.  No role but the owner
-- and rerankdb_worker can read or write a vector, the state or a queue: the
-- read functions and the queue triggers run with the owner's rights.
do $$
declare
    r text;
begin
    foreach r in array array['rerankdb_app', 'rerankdb_reader', 'rerankdb_worker'] loop
        if not exists (select 1 from pg_catalog.pg_roles where rolname = r) then
            execute pg_catalog.format('create role %I nologin', r);
        end if;
    end loop;
exception when insufficient_privilege then
    raise exception 'rerankdb: cannot create the roles rerankdb_app, rerankdb_reader, rerankdb_worker (%)', sqlerrm
        using hint = 'create them once as a role with CREATEROLE: create role rerankdb_app nologin; '
                     'create role rerankdb_reader nologin; create role rerankdb_worker nologin; then migrate again';
end
$$;

grant usage on schema rerankdb to rerankdb_app, rerankdb_reader, rerankdb_worker;

-- Functions: nobody by default (PostgreSQL grants EXECUTE to PUBLIC), then
-- each role what it needs.  A later revision that adds a function revokes
-- it from PUBLIC too (tests/test_roles.py fails otherwise).  rerankdb.nearest
-- stays the owner's: called with chosen query vectors it would give the
-- item embeddings away.
revoke execute on all functions in schema rerankdb from public;
grant execute on function
    rerankdb.rerank(bigint, bigint[], integer),
    rerankdb.rerank_scored(bigint, bigint[], double precision[], double precision, integer),
    rerankdb.recommend(bigint, integer, boolean),
    rerankdb.similar_items(bigint, integer),
    rerankdb.dimension()
    to rerankdb_app, rerankdb_reader;
grant execute on function
    rerankdb.forget_user(bigint),
    rerankdb.set_item_vectors(bigint[], vector[]),
    rerankdb.set_user_vectors(bigint[], vector[]),
    rerankdb.counts()
    to rerankdb_app;
grant execute on all functions in schema rerankdb to rerankdb_worker;

-- Tables.
grant select, insert, update, delete on rerankdb.items, rerankdb.interactions, rerankdb.interaction_kinds
    to rerankdb_app;
grant usage on sequence rerankdb.interactions_interaction_id_seq to rerankdb_app;
grant select on rerankdb.status to rerankdb_app, rerankdb_worker;
grant select on rerankdb.items, rerankdb.interactions, rerankdb.interaction_kinds, rerankdb.config,
    rerankdb.settings
    to rerankdb_worker;
grant update (trained_at, text_center, collab_center) on rerankdb.settings to rerankdb_worker;
grant select, insert, update, delete on rerankdb.item_vectors, rerankdb.user_vectors, rerankdb.item_rank,
    rerankdb.item_queue, rerankdb.interaction_queue, rerankdb.user_state, rerankdb.user_rebuild_queue,
    rerankdb.worker_state
    to rerankdb_worker;
-- Which revision is installed (rerankdb status).
grant select on public.rerankdb_alembic_version to rerankdb_app, rerankdb_worker;
