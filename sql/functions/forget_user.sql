-- rerankdb.forget_user(user_id): erase a user (a deletion request).
--
-- Deletes, in one transaction, the user's interactions, their queued rows,
-- their state, their snapshot (revision 0009: the compacted history) and
-- vectors, and any pending rebuild.  Returns how many interactions were
-- deleted from the log (0 for an unknown user: not an error).  NULL: error
-- 22004.  The items the user interacted with are not touched.
create or replace function rerankdb.forget_user(user_id bigint)
returns bigint
language plpgsql volatile
security definer
set search_path = pg_catalog
as $fn$
declare
    n bigint;
begin
    if forget_user.user_id is null then
        raise exception 'rerankdb.forget_user: user_id must not be NULL' using errcode = '22004';
    end if;
    -- Queued rows go with their interactions (on delete cascade).
    delete from rerankdb.interactions i where i.user_id = forget_user.user_id;
    get diagnostics n = row_count;
    delete from rerankdb.user_state s where s.user_id = forget_user.user_id;
    delete from rerankdb.user_snapshot s where s.user_id = forget_user.user_id;
    delete from rerankdb.user_vectors v where v.user_id = forget_user.user_id;
    delete from rerankdb.user_rebuild_queue q where q.user_id = forget_user.user_id;
    return n;
end
$fn$;
