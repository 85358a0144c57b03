-- rerankdb 0003: collaborative vectors beside the text vectors.  Frozen once released.
--
-- `collab` is a unit vector learned from the interaction log by `rerankdb
-- train` (its dimension is set by training, the same for every row).  It
-- sits in the same row as the text vector so that reranking still reads one
-- row per candidate.  NULL: not trained yet (a new item, or no interactions),
-- and then the item ranks by its text alone.
alter table rerankdb.item_vectors add column collab vector null;
-- How many users the collaborative vector was learned from: a vector learned
-- from a handful of users weighs less (see collab_shrink).
alter table rerankdb.item_vectors add column collab_support integer null;
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
