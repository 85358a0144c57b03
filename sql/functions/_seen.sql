-- rerankdb._seen(user_id, item_id): whether the user has a positive
-- interaction with the item (effective weight: the row's own, else its
-- kind's, > 0): what exclude_seen => true drops.  Through the index on
-- interactions (user_id, item_id).
create or replace function rerankdb._seen(user_id bigint, item_id bigint)
returns boolean
language sql stable parallel safe
set search_path = pg_catalog, public
as $fn$
    select exists (
        select 1
        from rerankdb.interactions i
        join rerankdb.interaction_kinds kd on kd.kind = i.kind
        where i.user_id = _seen.user_id and i.item_id = _seen.item_id
          and coalesce(i.weight, kd.weight) > 0
    )
$fn$;
