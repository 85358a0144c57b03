-- rerankdb.sync_item_rank(): AFTER INSERT / UPDATE OF embedding / DELETE
-- trigger on rerankdb.item_vectors.  Keeps rerankdb.item_rank's copy of the
-- text vector equal to item_vectors (already normalized by then); its
-- collaborative vector, if any, is left as it is until the next training.
-- Where a hybrid index is built (rerankdb.hybrid_meta has a row), the item
-- is listed in rerankdb.hybrid_keys_fresh until the next build includes it
-- (rerankdb.nearest scores those exactly beside the index search).
-- Security: runs with its owner's rights (security definer, search_path
-- pinned, names schema-qualified), so callers need EXECUTE on it and no
-- access to the tables it reads or writes (README, "Roles").
create or replace function rerankdb.sync_item_rank() returns trigger
language plpgsql
security definer
set search_path = pg_catalog
as $fn$
begin
    if tg_op = 'DELETE' then
        delete from rerankdb.item_rank where item_id = old.item_id;
        delete from rerankdb.hybrid_keys_fresh where item_id = old.item_id;
        return null;
    end if;
    insert into rerankdb.item_rank (item_id, embedding) values (new.item_id, new.embedding)
    on conflict (item_id) do update set embedding = excluded.embedding;
    if exists (select 1 from rerankdb.hybrid_meta) then
        insert into rerankdb.hybrid_keys_fresh (item_id) values (new.item_id)
        on conflict (item_id) do update set xid = excluded.xid;
    end if;
    return null;
end
$fn$;
