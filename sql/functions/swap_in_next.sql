-- rerankdb.swap_in_next(target, caller): the last step of a rebuild beside
-- the old table (rerankdb.refresh_collab_keys, rerankdb.refresh_hybrid_keys):
-- rerankdb.<target>_next takes the name of rerankdb.<target>, its indexes
-- <target>_next_pkey and <target>_next_hnsw theirs, rerankdb_worker may read
-- it, and it is analyzed.  Called in the rebuild's transaction.
--
-- These are the only statements that lock the table readers use.  A reader
-- queued behind a waiting ACCESS EXCLUSIVE lock would wait too, so the lock
-- is tried for 50 ms at a time, 20 times, giving readers the table between
-- tries; a transaction that keeps reading the old table all along makes this
-- fail (55P03, the message names caller), with everything left as it was.
-- Security: EXECUTE for the owner only (the refresh functions run as the
-- owner and call it).
create or replace function rerankdb.swap_in_next(target text, caller text)
returns void
language plpgsql volatile
set search_path = pg_catalog, public
as $fn$
declare
    saved_timeout text := current_setting('lock_timeout');
    locked boolean := false;
    attempt integer;
begin
    for attempt in 1..20 loop
        begin
            perform set_config('lock_timeout', '50ms', true);
            execute format('lock table rerankdb.%I in access exclusive mode', target);
            locked := true;
            exit;
        exception when lock_not_available then
            perform pg_sleep(0.1);
        end;
    end loop;
    perform set_config('lock_timeout', saved_timeout, true);
    if not locked then
        raise exception 'rerankdb.%: a transaction kept reading rerankdb.% for 3 s; '
                        'the old keys stay (recommend still works with them)', caller, target
            using errcode = '55P03', hint = 'end long transactions that call recommend, then run it again';
    end if;
    execute format('drop table rerankdb.%I', target);
    execute format('alter table rerankdb.%I rename to %I', target || '_next', target);
    execute format('alter index rerankdb.%I rename to %I', target || '_next_pkey', target || '_pkey');
    execute format('alter index rerankdb.%I rename to %I', target || '_next_hnsw', target || '_hnsw');
    execute format('grant select on rerankdb.%I to rerankdb_worker', target);
    execute format('analyze rerankdb.%I', target);
end
$fn$;
