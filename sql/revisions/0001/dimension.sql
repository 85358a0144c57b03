-- rerankdb 0001: fix the embedding dimension recorded in rerankdb.config and
-- build the nearest-neighbour index.  Frozen once released.
do $$
declare
    d integer := (select dim from rerankdb.config);
begin
    execute 'alter table rerankdb.item_vectors alter column embedding type vector(' || d || ')';
    execute 'alter table rerankdb.user_vectors alter column embedding type vector(' || d || ')';
end
$$;

-- Inner product on unit vectors orders exactly like cosine, with one dot
-- product per comparison instead of three.
create index item_vectors_embedding_hnsw on rerankdb.item_vectors
    using hnsw (embedding vector_ip_ops);

create trigger item_vectors_normalize
    before insert or update of embedding on rerankdb.item_vectors
    for each row execute function rerankdb.normalize_embedding();
create trigger user_vectors_normalize
    before insert or update of embedding on rerankdb.user_vectors
    for each row execute function rerankdb.normalize_embedding();
