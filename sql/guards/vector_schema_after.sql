-- rerankdb, after every migration: where pgvector lives outside public, the
-- rerankdb functions that pin "search_path = pg_catalog, public" (so as to
-- find pgvector's types and operators) pin the extension's schema instead.
-- Nothing to do where pgvector is in public, or rerankdb is not installed.
do $$
declare
    ext text := (select e.extnamespace::regnamespace::text from pg_catalog.pg_extension e
                 where e.extname = 'vector');
    fn regprocedure;
begin
    if ext is null or ext = 'public' or pg_catalog.to_regnamespace('rerankdb') is null then
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
