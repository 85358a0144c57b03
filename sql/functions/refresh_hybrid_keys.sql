-- rerankdb.refresh_hybrid_keys(): rebuild rerankdb.hybrid_keys, the one HNSW
-- index that ranks the whole catalog by rerank's score itself
-- (rerankdb.nearest searches it for recommend and similar_items).
-- `rerankdb train` calls it after its training has committed, and `rerankdb
-- tune` after it changes collab_weight, collab_shrink or sequence_weight; a
-- DBA who changes those settings by hand runs it too (until then nearest
-- searches the text and collaborative indexes, as before revision 0014).
--
-- Key     rerank's score is linear in the item's vectors with item-side
--         weights, so it is one inner product.  With the settings' w =
--         collab_weight, s = sequence_weight and the item's w_i = w * support
--         / (support + collab_shrink), an item's key is rerankdb.hybrid_key of
--         [(1 - s)(1 - w_i) text, (1 - s) w_i collab, s seq] (w_i = 0 without
--         a collaborative vector, s = 0 without a sequence vector), in halfvec;
--         a user's is [text, collab, seq] as recommend blends them.  A space
--         is left out when its weight is 0 or no item has its vector; with
--         the text alone left (no training yet), nothing is built: the text
--         index is that index.
-- Limits  pgvector's HNSW index takes halfvec up to 4,000 dimensions: above
--         (text + collaborative + sequence dimensions), nothing is built,
--         a notice says so, and nearest keeps the two-index search.  On Citus
--         nothing is built either (the keys would be a reference table rebuilt
--         row by row on every node): it returns 0 and the two-index search
--         stays.
-- Fresh   items embedded since the build (rerankdb.sync_item_rank lists them
--         in rerankdb.hybrid_keys_fresh) are scored exactly beside the index
--         search; this build clears the ones it includes (those committed
--         before it started).
-- Index   HNSW with m = 32, ef_construction = 200 (pgvector's defaults: 16,
--         64).  A user's best items lie in several clusters of every space:
--         on a clustered catalog of 100,000 items (python -m rerankdb.bench
--         hybrid) the default graph found 0.69 of recommend's exact top 10,
--         ef_construction 200 alone 0.85, both 0.945, for twice the pages
--         read per search and five times the build time (docs/benchmarks.md,
--         "The hybrid index").
-- Swap    built beside the old table and swapped in (rerankdb.swap_in_next):
--         readers use the old keys until the commit, then the new ones.  The
--         settings it was built with go into rerankdb.hybrid_meta; nearest
--         uses the keys only while they equal the current ones.
-- Output  the number of keys (0: none built).  Concurrent calls run one after
--         the other.
-- Edge    a transaction holding the old table for over 3 s: error 55P03,
--         nothing changed.
-- Security: runs with its owner's rights (it creates and drops the owner's
-- table); EXECUTE for the owner and rerankdb_worker only.
create or replace function rerankdb.refresh_hybrid_keys()
returns bigint
language plpgsql volatile
security definer
set search_path = pg_catalog, public
set maintenance_work_mem = '256MB'
as $fn$
declare
    n bigint;
    started pg_snapshot;
    st rerankdb.settings%rowtype;
    dt integer;
    dc integer := 0;
    ds integer := 0;
begin
    perform pg_advisory_xact_lock('rerankdb.item_rank'::regclass::oid::integer, 3);
    started := pg_current_snapshot();
    select * into st from rerankdb.settings;
    if to_regclass('pg_catalog.pg_dist_partition') is not null then
        if exists (select 1 from pg_catalog.pg_dist_partition p
                   where p.logicalrelid = 'rerankdb.hybrid_keys'::regclass) then
            delete from rerankdb.hybrid_meta;
            return 0;
        end if;
    end if;
    select c.dim into dt from rerankdb.config c;
    if st.collab_weight > 0 then
        select coalesce(vector_dims(r.collab), 0) into dc
        from rerankdb.item_rank r where r.collab is not null limit 1;
        dc := coalesce(dc, 0);
    end if;
    if st.sequence_weight > 0 then
        select vector_dims(r.seq) into ds
        from rerankdb.item_rank r where r.seq is not null limit 1;
        ds := coalesce(ds, 0);
    end if;
    if dc = 0 and ds = 0 then
        delete from rerankdb.hybrid_meta;  -- text alone: the text index is that index
        return 0;
    end if;
    if dt + dc + ds > 4000 then
        delete from rerankdb.hybrid_meta;
        raise notice 'rerankdb.refresh_hybrid_keys: % dimensions (text %, collaborative %, sequence %) exceed '
                     'the 4,000 of an HNSW index on halfvec; none built, recommend searches the text and '
                     'collaborative indexes', dt + dc + ds, dt, dc, ds;
        return 0;
    end if;
    drop table if exists rerankdb.hybrid_keys_next;
    execute format('create table rerankdb.hybrid_keys_next (item_id bigint primary key, key halfvec(%s) not null)',
                   dt + dc + ds);
    insert into rerankdb.hybrid_keys_next (item_id, key)
    select r.item_id,
           rerankdb.hybrid_key(r.embedding::vector, (1 - r.s) * (1 - r.w), r.collab, (1 - r.s) * r.w, dc,
                               r.seq, r.s, ds)::halfvec
    from (select i.item_id, i.embedding, i.collab, i.seq,
                 case when dc > 0 and i.collab is not null and vector_dims(i.collab) = dc
                      then st.collab_weight::double precision * i.support / (i.support + st.collab_shrink)
                      else 0 end as w,
                 case when ds > 0 and i.seq is not null and vector_dims(i.seq) = ds
                      then st.sequence_weight else 0 end as s
          from rerankdb.item_rank i) r
    order by r.item_id;
    get diagnostics n = row_count;
    create index hybrid_keys_next_hnsw on rerankdb.hybrid_keys_next using hnsw (key halfvec_ip_ops)
        with (m = 32, ef_construction = 200);
    perform rerankdb.swap_in_next('hybrid_keys', 'refresh_hybrid_keys');
    delete from rerankdb.hybrid_keys_fresh f where pg_visible_in_snapshot(f.xid, started);
    insert into rerankdb.hybrid_meta as m (singleton, text_dim, collab_dim, seq_dim, collab_weight, collab_shrink,
                                          sequence_weight, trained_at, built_at, items)
    values (true, dt, dc, ds, st.collab_weight, st.collab_shrink, st.sequence_weight, st.trained_at,
            clock_timestamp(), n)
    on conflict (singleton) do update
        set text_dim = excluded.text_dim, collab_dim = excluded.collab_dim, seq_dim = excluded.seq_dim,
            collab_weight = excluded.collab_weight, collab_shrink = excluded.collab_shrink,
            sequence_weight = excluded.sequence_weight, trained_at = excluded.trained_at,
            built_at = excluded.built_at, items = excluded.items;
    return n;
end
$fn$;
