-- rerankdb, after every migration: where pgvector lives outside public, the
-- rerankdb functions that pin "search_path = pg_catalog, public" (so as to
-- find pgvector's types and operators) pin the extension's schema instead.
-- Nothing to do where pgvector is in public, or rerankdb is not installed.
-- It warns when anyone may create objects in that schema (PostgreSQL 14 and
-- older by default): a planted function there would run with the owner's
-- rights inside rerankdb's SECURITY DEFINER functions.
do $$
declare
    ext text := (select n.nspname from pg_catalog.pg_extension e
                 join pg_catalog.pg_namespace n on n.oid = e.extnamespace
                 where e.extname = 'vector');
    fn regprocedure;
begin
    if ext is null or pg_catalog.to_regnamespace('rerankdb') is null then
        return;
    end if;
    if pg_catalog.has_schema_privilege('public', ext, 'CREATE') then
        raise warning 'rerankdb: every role may create objects in schema % (where pgvector is), which rerankdb''s functions search', ext
            using hint = 'revoke create on schema ' || pg_catalog.quote_ident(ext) || ' from public';
    end if;
    if ext = 'public' then
        return;
    end if;
    for fn in
        select p.oid::regprocedure from pg_catalog.pg_proc p
        where p.pronamespace = 'rerankdb'::regnamespace
          and exists (select 1 from pg_catalog.unnest(p.proconfig) as c(setting)
                      where c.setting = 'search_path=pg_catalog, public')
    loop
        execute 'alter function ' || fn::text || ' set search_path = pg_catalog, ' || pg_catalog.quote_ident(ext);
    end loop;
end
$$;
