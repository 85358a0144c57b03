-- rerankdb.release_deferred(): AFTER INSERT trigger on rerankdb.item_vectors.
-- Interactions deferred because their item had no vector become due again,
-- whoever wrote the vector (the worker, or an application's own embedding).
create or replace function rerankdb.release_deferred() returns trigger
language plpgsql
set search_path = pg_catalog
as $fn$
begin
    update rerankdb.interaction_queue set deferred = false
    where item_id = new.item_id and deferred;
    return null;
end
$fn$;
