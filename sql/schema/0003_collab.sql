-- rerankdb 0003: collaborative vectors beside the text vectors.  Frozen once released.
--
-- An item's collaborative vector is a unit vector learned from the
-- interaction log by `rerankdb train` (its dimension is set by training, the
-- same for every row).  It lives in a table of its own, not in item_vectors:
-- retraining rewrites every row, which in item_vectors would re-insert every
-- item into the HNSW index, and text + collaborative vector in one row would
-- pass PostgreSQL's 2 kB TOAST threshold.  No row: not trained yet (a new
-- item, or nobody interacted with it), and the item ranks by its text alone.
create table rerankdb.item_collab (
    item_id bigint primary key references rerankdb.items (item_id) on delete cascade,
    collab vector not null,
    -- how many users the vector was learned from: a vector learned from a
    -- handful of users weighs less (see settings.collab_shrink)
    support integer not null check (support > 0)
);
alter table rerankdb.user_vectors add column collab vector null;
alter table rerankdb.user_state add column collab_sum vector null;

-- Settings read by the SQL functions and the worker (one row).
create table rerankdb.settings (
    singleton boolean primary key default true check (singleton),
    -- score = (1 - collab_weight) * text cosine + collab_weight * collaborative
    -- cosine, where both vectors exist; text cosine alone otherwise.
    collab_weight real not null default 0.7 check (collab_weight >= 0 and collab_weight <= 1),
    -- an item's own weight is collab_weight * support / (support + collab_shrink):
    -- a vector learned from few users leans on the text.  0: no shrinking.
    collab_shrink real not null default 0 check (collab_shrink >= 0 and collab_shrink < 'Infinity'),
    collab_dim integer not null default 128 check (collab_dim between 2 and 1024),
    trained_at timestamptz null
);
insert into rerankdb.settings default values;
