-- rerankdb 0014: one HNSW index that ranks by rerank's score itself.
-- Frozen once released.
--
-- rerankdb.hybrid_keys: one key per item, [(1 - s)(1 - w_i) text,
-- (1 - s) w_i collab, s seq] in halfvec (rerankdb.refresh_hybrid_keys builds
-- it beside this one, with the dimension and the HNSW index, and swaps it
-- in); empty until the first build.
create table rerankdb.hybrid_keys (
    item_id bigint primary key,
    key halfvec not null
);
-- What the keys were built with: rerankdb.nearest uses them only while the
-- settings and the training are still these.  No row: none built.
create table rerankdb.hybrid_meta (
    singleton boolean primary key default true check (singleton),
    text_dim integer not null,
    collab_dim integer not null,
    seq_dim integer not null,
    collab_weight real not null,
    collab_shrink real not null,
    sequence_weight double precision not null,
    trained_at timestamptz,
    built_at timestamptz not null,
    items bigint not null
);
-- Items embedded since the build (rerankdb.sync_item_rank), scored exactly
-- beside the index search; xid: the transaction that wrote the embedding (a
-- build clears those its snapshot includes).
create table rerankdb.hybrid_keys_fresh (
    item_id bigint primary key,
    xid xid8 not null default pg_current_xact_id()
);
grant select on rerankdb.hybrid_keys, rerankdb.hybrid_meta, rerankdb.hybrid_keys_fresh to rerankdb_worker;

-- nearest takes the user's sequence vector (the old signature goes; only
-- recommend and similar_items call it).
drop function rerankdb.nearest(vector, vector, integer, bigint, bigint);
