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

-- The collaborative vectors' index: one key per item (rerankdb.collab_key),
-- whatever the dimension training chose.  Training rewrites every key; HNSW
-- keeps the index searchable meanwhile (readers see the old rows until it
-- commits).
create index item_rank_collab_key_idx on rerankdb.item_rank
    using hnsw ((rerankdb.collab_key(collab)::vector(64)) vector_ip_ops);

grant update (context_items_weight) on rerankdb.settings to rerankdb_worker;
