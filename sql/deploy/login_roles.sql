-- A login user in one of rerankdb's roles (rerankdb_app, rerankdb_reader,
-- rerankdb_worker; revision 0005 creates them, NOLOGIN), for docker-compose.yml
-- and for DBAs:
--
--   psql -v user=worker -v role=rerankdb_worker -v password="$PASSWORD" -f login_roles.sql
--
-- Run as a role with CREATEROLE, after `rerankdb migrate`.  Idempotent: the
-- user is created if missing, and its password, LOGIN and membership are set
-- every time (a changed password takes effect on the next run).  The user is a
-- plain member of `role`: it can do what that role can, nothing more.  It
-- refuses a superuser or the connected role as `user` (it would take their
-- rights away) and a `role` that is not one of the three.
\set ON_ERROR_STOP on

select :'role' in ('rerankdb_app', 'rerankdb_reader', 'rerankdb_worker') as known_role,
       exists (select 1 from pg_catalog.pg_roles
               where rolname = :'user' and (rolsuper or rolname = current_user)) as admin_user \gset
\if :known_role
\else
do $$ begin raise exception 'rerankdb: role must be rerankdb_app, rerankdb_reader or rerankdb_worker'; end $$;
\endif
\if :admin_user
do $$ begin raise exception 'rerankdb: user must be a new or plain login user, not a superuser or the connected role'; end $$;
\endif

select pg_catalog.format('create role %I', :'user')
where not exists (select 1 from pg_catalog.pg_roles where rolname = :'user') \gexec

select pg_catalog.format(
    'alter role %I login nosuperuser nocreatedb nocreaterole password %L', :'user', :'password'
) \gexec

select pg_catalog.format('grant %I to %I', :'role', :'user') \gexec
