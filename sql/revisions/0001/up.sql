-- rerankdb 0001: the core schema.  Applied by migrations/versions/0001_core.py.
-- Frozen once released: change the schema with a new revision, never here.
--
-- Vector columns are created without a dimension; 0001_dimension.sql fixes it
-- from rerankdb.config, which the revision fills in between the two files.

create extension if not exists vector;

create schema rerankdb;
comment on schema rerankdb is 'rerankdb: personalized reranking with pgvector';

-- One row: facts fixed at install time that every writer checks.
create table rerankdb.config (
    singleton boolean primary key default true check (singleton),
    dim integer not null check (dim between 1 and 2000),
    installed_at timestamptz not null default now()
);
comment on table rerankdb.config is 'install-time facts; dim is the dimension of every embedding';

-- App-owned: the catalog.  content is the text the encoder embeds.
create table rerankdb.items (
    item_id bigint primary key,
    content text not null,
    metadata jsonb not null default '{}',
    updated_at timestamptz not null default now()
);

-- App-owned: what each interaction kind weighs.  Negative kinds push away.
create table rerankdb.interaction_kinds (
    kind text primary key,
    weight real not null check (weight > '-Infinity' and weight < 'Infinity')
);
insert into rerankdb.interaction_kinds (kind, weight) values
    ('view', 1), ('click', 1), ('like', 2), ('add_to_cart', 2),
    ('purchase', 3), ('skip', -0.5), ('dislike', -1);

-- App-owned, append-only event log.  No foreign key to items on purpose: an
-- interaction with an item that is not (yet) in the catalog is kept and
-- counts once the item exists.
create table rerankdb.interactions (
    interaction_id bigserial primary key,
    user_id bigint not null,
    item_id bigint not null,
    kind text not null default 'view'
        references rerankdb.interaction_kinds (kind) on update cascade,
    weight real null check (weight > '-Infinity' and weight < 'Infinity'),
    context text null,
    occurred_at timestamptz not null default now()
);
create index interactions_user_item_idx on rerankdb.interactions (user_id, item_id);
create index interactions_item_idx on rerankdb.interactions (item_id);

-- Owned by rerankdb (the worker fills them from text; apps that bring their
-- own embeddings write them directly).  Stored L2-normalized by a trigger,
-- so cosine similarity is a plain inner product at query time.
create table rerankdb.item_vectors (
    item_id bigint primary key references rerankdb.items (item_id) on delete cascade,
    embedding vector not null,
    updated_at timestamptz not null default now()
);

create table rerankdb.user_vectors (
    user_id bigint primary key,
    embedding vector not null,
    updated_at timestamptz not null default now()
);
