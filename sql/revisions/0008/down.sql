-- rerankdb 0008, undone: vectors back to vector, the storage column and the
-- app role's grant removed.  Frozen once released.
do $$
declare
    d integer := (select dim from rerankdb.config);
begin
    if (select storage from rerankdb.config) = 'halfvec' then
        -- The index and the triggers that name the column go, and come back after.
        drop index rerankdb.item_vectors_embedding_hnsw;
        drop trigger item_vectors_normalize on rerankdb.item_vectors;
        drop trigger item_vectors_sync_rank on rerankdb.item_vectors;
        execute 'alter table rerankdb.item_vectors alter column embedding type vector(' || d || ')';
        execute 'alter table rerankdb.item_rank alter column embedding type vector(' || d || ')';
        create trigger item_vectors_normalize
            before insert or update of embedding on rerankdb.item_vectors
            for each row execute function rerankdb.normalize_embedding();
        create trigger item_vectors_sync_rank
            after insert or update of embedding on rerankdb.item_vectors
            for each row execute function rerankdb.sync_item_rank();
        create index item_vectors_embedding_hnsw on rerankdb.item_vectors
            using hnsw (embedding vector_ip_ops);
    end if;
end
$$;
revoke select on rerankdb.config from rerankdb_app;
alter table rerankdb.config drop column storage;
revoke execute on function rerankdb.interaction_problem(timestamptz, double precision) from rerankdb_app;
