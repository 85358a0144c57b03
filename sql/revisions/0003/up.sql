-- rerankdb 0003: collaborative vectors beside the text vectors.  Frozen once released.
--
-- rerankdb.item_rank is what rerankdb.rerank reads: one row per item with a
-- vector, holding a copy of its text vector (kept in sync with item_vectors
-- by a trigger) and, once `rerankdb train` has run, its collaborative vector
-- (a unit vector learned from the interaction log; its dimension is set by
-- training, the same for every row) and how many users it was learned from.
-- One row per candidate keeps reranking at one read per candidate.  Why not
-- columns on item_vectors: retraining rewrites every collaborative vector,
-- and each such update of item_vectors would re-insert the row into its HNSW
-- index (measured: 2.3 ms per item).  item_rank has no such index.
create table rerankdb.item_rank (
    item_id bigint primary key references rerankdb.items (item_id) on delete cascade,
    embedding vector not null,
    collab vector null,
    support integer null check (support > 0),
    check ((collab is null) = (support is null))
);
-- Text (1.5 kB at 384-d) and collaborative vectors together pass the default
-- 2 kB TOAST threshold; keep rows up to 4 kB inline, so a read stays one read.
alter table rerankdb.item_rank set (toast_tuple_target = 4080);
do $$
begin
    execute 'alter table rerankdb.item_rank alter column embedding type vector('
        || (select dim from rerankdb.config) || ')';
end
$$;

create trigger item_vectors_sync_rank
    after insert or update of embedding on rerankdb.item_vectors
    for each row execute function rerankdb.sync_item_rank();
create trigger item_vectors_unsync_rank
    after delete on rerankdb.item_vectors
    for each row execute function rerankdb.sync_item_rank();

insert into rerankdb.item_rank (item_id, embedding)
select item_id, embedding from rerankdb.item_vectors;

alter table rerankdb.user_vectors add column collab vector null;
alter table rerankdb.user_state add column collab_sum vector null;

-- Settings read by the SQL functions and the worker (one row).
create table rerankdb.settings (
    singleton boolean primary key default true check (singleton),
    -- score = (1 - w) * text cosine + w * collaborative cosine where both
    -- vectors exist (text cosine alone otherwise), with an item's
    -- w = collab_weight * support / (support + collab_shrink):
    -- a vector learned from few users leans on the text.
    collab_weight real not null default 0.7 check (collab_weight >= 0 and collab_weight <= 1),
    collab_shrink real not null default 0 check (collab_shrink >= 0 and collab_shrink < 'Infinity'),
    collab_dim integer not null default 64 check (collab_dim between 2 and 600),
    trained_at timestamptz null
);
insert into rerankdb.settings default values;
