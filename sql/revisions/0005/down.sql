-- rerankdb 0005 downgrade: back to 0004.  The roles stay (they belong to the
-- cluster; drop them by hand once no database uses them); their privileges
-- on this database go.  The functions 0005 changed are restored after this
-- file, and 0002's status view (it has fewer columns) is created anew.
drop view rerankdb.status;
revoke all on all tables in schema rerankdb from rerankdb_app, rerankdb_reader, rerankdb_worker;
revoke all on all sequences in schema rerankdb from rerankdb_app, rerankdb_reader, rerankdb_worker;
revoke all on all functions in schema rerankdb from rerankdb_app, rerankdb_reader, rerankdb_worker;
revoke usage on schema rerankdb from rerankdb_app, rerankdb_reader, rerankdb_worker;
revoke select on public.rerankdb_alembic_version from rerankdb_app, rerankdb_worker;
grant execute on all functions in schema rerankdb to public;

drop trigger interactions_check on rerankdb.interactions;
drop trigger interactions_rebuild_user on rerankdb.interactions;
drop trigger interactions_rebuild_notify on rerankdb.interactions;
drop table rerankdb.user_rebuild_queue;
drop function rerankdb.check_interaction(), rerankdb.enqueue_user_rebuild(),
    rerankdb.interaction_problem(timestamptz, double precision),
    rerankdb.forget_user(bigint), rerankdb.counts(),
    rerankdb.set_item_vectors(bigint[], vector[]), rerankdb.set_user_vectors(bigint[], vector[]),
    rerankdb._check_vector_arguments(text, bigint[], vector[]);
alter table rerankdb.interactions drop constraint interactions_weight_within_1e6;
alter table rerankdb.interaction_kinds drop constraint interaction_kinds_weight_within_1e6;
alter table rerankdb.settings drop column future_tolerance;
alter table rerankdb.interaction_queue drop column attempts, drop column last_error, drop column not_before;
