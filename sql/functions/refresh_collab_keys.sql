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
-- and never see an error (rerankdb.swap_in_next).  Between a training's commit and this one, the
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
    perform rerankdb.swap_in_next('collab_keys', 'refresh_collab_keys');
    return n;
end
$fn$;
