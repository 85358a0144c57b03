-- rerankdb, before every migration: find the pgvector extension wherever it
-- is installed (managed services often keep extensions in a schema of their
-- own: Supabase's is "extensions") and put its schema on this transaction's
-- search_path, so that the revisions' type and operator names resolve.
-- There, SQL-language function bodies are checked when they are first run
-- instead of when they are created (their pinned search_path names public
-- until vector_schema_after.sql pins the extension's schema instead).
do $$
declare
    ext text := (select n.nspname from pg_catalog.pg_extension e
                 join pg_catalog.pg_namespace n on n.oid = e.extnamespace
                 where e.extname = 'vector');
begin
    if ext is not null and ext <> 'public' then
        if not ext = any (pg_catalog.current_schemas(false)::text[]) then
            perform pg_catalog.set_config(
                'search_path', pg_catalog.current_setting('search_path') || ', ' || pg_catalog.quote_ident(ext), true
            );
        end if;
        perform pg_catalog.set_config('check_function_bodies', 'off', true);
    end if;
end
$$;
