-- rerankdb.release_deferred(): AFTER INSERT trigger on rerankdb.item_vectors.
-- Interactions deferred because their item had no vector become due again,
-- whoever wrote the vector (the worker, or an application's own embedding).
-- Security: runs with its owner's rights (security definer, search_path
-- pinned, names schema-qualified), so callers need EXECUTE on it and no
-- access to the tables it reads or writes (README, "Roles").
create or replace function rerankdb.release_deferred() returns trigger
language plpgsql
security definer
set search_path = pg_catalog
as $fn$
begin
    update rerankdb.interaction_queue set deferred = false
    where item_id = new.item_id and deferred;
    return null;
end
$fn$;
