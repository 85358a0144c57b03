-- rerankdb.enqueue_item(): AFTER INSERT / UPDATE OF content trigger on
-- rerankdb.items.  Queues the item for (re-)embedding; an item already queued
-- is re-queued from scratch (its error count reset, due now), so a worker
-- holding an older claim will not delete the newer request.
-- Security: runs with its owner's rights (security definer, search_path
-- pinned, names schema-qualified), so callers need EXECUTE on it and no
-- access to the tables it reads or writes (README, "Roles").
create or replace function rerankdb.enqueue_item() returns trigger
language plpgsql
security definer
set search_path = pg_catalog
as $fn$
begin
    insert into rerankdb.item_queue as q (item_id) values (new.item_id)
    on conflict (item_id) do update
        set enqueued_at = clock_timestamp(), attempts = 0, last_error = null, not_before = '-infinity';
    return null;
end
$fn$;
