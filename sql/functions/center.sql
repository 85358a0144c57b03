-- rerankdb.center(v, center, share): the centered query vector that
-- rerankdb.rerank and rerankdb.recommend score with:
-- normalize(v - share * center), the user's vector minus a share of the
-- average user's (rerankdb.settings.text_center / collab_center).
--
-- Input   v       a unit vector (a user's text or collaborative vector)
--         center  the average vector of that space, or NULL (none yet)
--         share   in [0, 1] (rerankdb.settings.text_centering / collab_centering)
-- Output  the centered unit vector; v itself when v, center or share is NULL,
--         share <= 0, the dimensions differ (a retraining in progress), or
--         v - share * center is (nearly) zero (v equal to the average).
create or replace function rerankdb.center(v vector, center vector, share double precision)
returns vector
language sql immutable parallel safe
set search_path = pg_catalog, public
as $fn$
    -- CASE, not AND: the dimensions must be checked before the subtraction.
    -- share = 1 (the text default) skips building the scaled center.
    select case
        when v is null or center is null or share is null or share <= 0
             or vector_dims(center) <> vector_dims(v) then v
        else (
            select case when vector_norm(x.diff) > 1e-6 then l2_normalize(x.diff) else v end
            from (
                select case when share = 1 then v - center
                            else v - center * array_fill(share, array[vector_dims(center)])::vector
                       end
            ) as x(diff)
        )
    end
$fn$;
