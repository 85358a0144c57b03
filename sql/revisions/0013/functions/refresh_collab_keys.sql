-- rerankdb.refresh_collab_keys(): rebuild rerankdb.collab_keys, the HNSW
-- index of the collaborative vectors that rerankdb.nearest searches, from
-- rerankdb.item_rank.  `rerankdb train` calls it after its training has
-- committed (outside the exclusive fold lock: folds go on meanwhile).
--
-- Built beside the old one and swapped in: the keys (rerankdb.collab_key of
-- every collaborative vector) go into a new table, its HNSW index is built
-- in bulk (one build, not one insert per row: at 100,000 items a bulk build
-- takes a fraction of the per-row inserts' time), and the new table takes
-- the old one's name in the last statements.  Readers use the old keys
-- until the commit, then the new ones; they wait only for the swap itself
-- and never see an error.  Between a training's commit and this one, the
-- old keys find the candidates (rerankdb.nearest scores them exactly with
-- the new vectors).
-- On Citus (revision 0013) collab_keys is a reference table, a copy on
-- every node: a new table would be a coordinator table that the workers
-- cannot read, so the keys are replaced in place instead (one transaction,
-- the HNSW index updated row by row; readers see the old keys until the
-- commit).
-- Output  the number of keys.  Concurrent calls run one after the other.
-- Edge    a transaction holding the old table for over 3 s: error 55P03,
--         nothing changed (see the swap below).
-- Security: runs with its owner's rights (it creates and drops the owner's
-- table); EXECUTE for the owner and rerankdb_worker only.
create or replace function rerankdb.refresh_collab_keys()
returns bigint
language plpgsql volatile
security definer
set search_path = pg_catalog, public
set maintenance_work_mem = '256MB'
as $fn$
declare
    n bigint;
    saved_timeout text;
    locked boolean := false;
    attempt integer;
begin
    perform pg_advisory_xact_lock('rerankdb.item_rank'::regclass::oid::integer, 2);
    if to_regclass('pg_catalog.pg_dist_partition') is not null then
        if exists (select 1 from pg_catalog.pg_dist_partition p
                   where p.logicalrelid = 'rerankdb.collab_keys'::regclass) then
            delete from rerankdb.collab_keys;
            insert into rerankdb.collab_keys (item_id, key)
            select r.item_id, rerankdb.collab_key(r.collab)
            from rerankdb.item_rank r
            where r.collab is not null
            order by r.item_id;
            get diagnostics n = row_count;
            return n;
        end if;
    end if;
    drop table if exists rerankdb.collab_keys_next;
    create table rerankdb.collab_keys_next (
        item_id bigint primary key,
        key vector(64) not null
    );
    insert into rerankdb.collab_keys_next (item_id, key)
    select r.item_id, rerankdb.collab_key(r.collab)
    from rerankdb.item_rank r
    where r.collab is not null
    order by r.item_id;
    get diagnostics n = row_count;
    create index collab_keys_next_hnsw on rerankdb.collab_keys_next using hnsw (key vector_ip_ops);
    -- The swap: the only statements that lock the table readers use.  A reader
    -- queued behind a waiting ACCESS EXCLUSIVE lock would wait too, so the lock
    -- is tried for 50 ms at a time, 20 times, giving readers the table between
    -- tries; a transaction that keeps reading the old keys all along makes
    -- this fail (55P03), with everything left as it was.
    saved_timeout := current_setting('lock_timeout');
    for attempt in 1..20 loop
        begin
            perform set_config('lock_timeout', '50ms', true);
            lock table rerankdb.collab_keys in access exclusive mode;
            locked := true;
            exit;
        exception when lock_not_available then
            perform pg_sleep(0.1);
        end;
    end loop;
    perform set_config('lock_timeout', saved_timeout, true);
    if not locked then
        raise exception 'rerankdb.refresh_collab_keys: a transaction kept reading rerankdb.collab_keys for 3 s; '
                        'the old keys stay (recommend still works with them)'
            using errcode = '55P03', hint = 'end long transactions that call recommend, then run it again';
    end if;
    drop table rerankdb.collab_keys;
    alter table rerankdb.collab_keys_next rename to collab_keys;
    alter index rerankdb.collab_keys_next_pkey rename to collab_keys_pkey;
    alter index rerankdb.collab_keys_next_hnsw rename to collab_keys_hnsw;
    grant select on rerankdb.collab_keys to rerankdb_worker;
    analyze rerankdb.collab_keys;
    return n;
end
$fn$;
