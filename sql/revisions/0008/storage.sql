-- rerankdb 0008, after rerankdb.config.storage is set: with 'halfvec', the
-- item text vectors (rerankdb.item_vectors and rerank's copy in
-- rerankdb.item_rank) become halfvec of the installed dimension, and the
-- HNSW index is rebuilt with halfvec_ip_ops.  Collaborative vectors, user
-- vectors and user state stay vector: they are small, and the sums need the
-- precision.  Reads cast to vector where a function expects one; pgvector
-- casts a vector query to halfvec implicitly, so the index is used.
-- Frozen once released.
do $$
declare
    d integer := (select dim from rerankdb.config);
begin
    if (select storage from rerankdb.config) = 'halfvec' then
        -- The index and the triggers that name the column go, and come back after.
        drop index rerankdb.item_vectors_embedding_hnsw;
        drop trigger item_vectors_normalize on rerankdb.item_vectors;
        drop trigger item_vectors_sync_rank on rerankdb.item_vectors;
        execute 'alter table rerankdb.item_vectors alter column embedding type halfvec(' || d || ')';
        execute 'alter table rerankdb.item_rank alter column embedding type halfvec(' || d || ')';
        create trigger item_vectors_normalize
            before insert or update of embedding on rerankdb.item_vectors
            for each row execute function rerankdb.normalize_embedding();
        create trigger item_vectors_sync_rank
            after insert or update of embedding on rerankdb.item_vectors
            for each row execute function rerankdb.sync_item_rank();
        create index item_vectors_embedding_hnsw on rerankdb.item_vectors
            using hnsw (embedding halfvec_ip_ops);
    end if;
end
$$;
