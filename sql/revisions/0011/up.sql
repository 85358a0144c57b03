-- rerankdb 0011: the sequence space.  Frozen once released.
--
-- A small causal transformer (rerankdb/sequence.py) reads each user's newest
-- positive interactions in time order and gives a user vector; its item
-- embeddings are the items' vectors of the space.  rerank blends the
-- sequence cosine into the score with settings.sequence_weight.

-- The trained models, one row per training.  The worker runs the newest
-- (highest version); the training writes it in the same transaction as the
-- items' sequence vectors and every user's, so a worker anywhere runs
-- exactly the model that produced the item vectors it reads.
create table rerankdb.sequence_model (
    version bigint primary key,
    trained_at timestamptz not null default now(),
    items bigint[] not null,  -- the model's item index i (1-based) is items[i]
    dim integer not null,
    max_len integer not null,  -- the newest positive interactions a user's vector reads
    weights bytea not null,  -- rerankdb.sequence.SequenceModel.state()
    report jsonb
);

-- Items: the unit sequence vector (the model's item embedding; for an item
-- the model never saw, the projection of its text vector).
alter table rerankdb.item_rank add column seq vector;

-- Users: the unit sequence vector, and what explain reads: the items the
-- model read (oldest first) and the newest position's attention over them.
alter table rerankdb.user_vectors
    add column seq vector,
    add column seq_items bigint[],
    add column seq_attention real[];

alter table rerankdb.settings
    -- rerank's score: (1 - s) * the text/collaborative score + s * the sequence
    -- cosine, where the user and the item have sequence vectors.
    add column sequence_weight double precision not null default 0.3
        check (sequence_weight >= 0 and sequence_weight <= 1);

-- A user's newest interactions first: what the worker reads on each fold.
create index interactions_user_time_idx
    on rerankdb.interactions (user_id, occurred_at desc, interaction_id desc);

grant select, insert, update, delete on rerankdb.sequence_model to rerankdb_worker;
grant update (sequence_weight) on rerankdb.settings to rerankdb_worker;
