-- rerankdb.enqueue_user_rebuild(): AFTER UPDATE / DELETE trigger on
-- rerankdb.interactions.  A user's vector is a sum over their log: when an
-- interaction is deleted or changed, the user (old and new, if user_id
-- changed) is queued for the worker to rebuild from the log as it is now.
create or replace function rerankdb.enqueue_user_rebuild() returns trigger
language plpgsql
security definer
set search_path = pg_catalog
as $fn$
begin
    insert into rerankdb.user_rebuild_queue (user_id) values (old.user_id) on conflict do nothing;
    if tg_op = 'UPDATE' and new.user_id is distinct from old.user_id then
        insert into rerankdb.user_rebuild_queue (user_id) values (new.user_id) on conflict do nothing;
    end if;
    return null;
end
$fn$;
