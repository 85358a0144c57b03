-- rerankdb 0007: what reranker users expect.  Frozen once released.
--
-- rerank and rerank_scored gain diversity (MMR), context_items and
-- exclude_seen as named, defaulted arguments: the old signatures are dropped
-- here and the new ones created after (a call with two or three positional
-- arguments means the same as before).  explain says why an item scores as
-- it does.  recommend and similar_items search an HNSW index over the
-- collaborative vectors too (rerankdb.nearest: the hybrid score).

drop function rerankdb.rerank(bigint, bigint[], integer);
drop function rerankdb.rerank_scored(bigint, bigint[], double precision[], double precision, integer);
drop function rerankdb.nearest(vector, integer, bigint, bigint);

alter table rerankdb.settings
    -- Share of the context items' vector in the query vector of each space
    -- (rerankdb.rerank's context_items): normalize((1 - c) user + c context).
    add column context_items_weight real not null default 0.5 check (context_items_weight >= 0 and context_items_weight <= 1);

-- The collaborative vectors' HNSW index, in a table of its own: one 64-d key
-- per item (rerankdb.collab_key), whatever the dimension training chose,
-- rebuilt in bulk after each training by rerankdb.refresh_collab_keys
-- (an index on item_rank itself would be updated row by row inside the
-- training's transaction: measured over 10 minutes for 100,000 items, with
-- every fold waiting).
create table rerankdb.collab_keys (
    item_id bigint primary key,
    key vector(64) not null
);
create index collab_keys_hnsw on rerankdb.collab_keys using hnsw (key vector_ip_ops);
insert into rerankdb.collab_keys (item_id, key)
select item_id, rerankdb.collab_key(collab) from rerankdb.item_rank where collab is not null order by item_id;
grant select on rerankdb.collab_keys to rerankdb_worker;

grant update (context_items_weight) on rerankdb.settings to rerankdb_worker;
