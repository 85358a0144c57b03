-- rerankdb.blend(long, short, share, center, centering): the query vector of
-- one space that rerankdb.rerank and rerankdb.recommend score with:
-- normalize((1 - share) * center(long) + share * center(short)), both
-- centered first (rerankdb.center with the space's center and centering).
--
-- Input   long       the user's long-term unit vector of the space (NULL: none)
--         short      the user's short-term unit vector, or NULL (none: a user
--                    folded before revision 0006, or vectors set by the app)
--         share      in [0, 1] (settings.short_weight / collab_short_weight)
--         center, centering   as for rerankdb.center
-- Output  a unit vector; center(long) when short is NULL, share <= 0, the
--         dimensions differ, or the blend is (nearly) zero; center(short)
--         when share >= 1; NULL when long is NULL.
create or replace function rerankdb.blend(
    long vector, short vector, share double precision, center vector, centering double precision
) returns vector
language sql immutable parallel safe
set search_path = pg_catalog, public
as $fn$
    select case
        when long is null then null
        when short is null or share is null or share <= 0 or vector_dims(short) <> vector_dims(long)
            then rerankdb.center(long, center, centering)
        when share >= 1 then rerankdb.center(short, center, centering)
        else (
            select case when vector_norm(x.v) > 1e-6 then l2_normalize(x.v)
                        else rerankdb.center(long, center, centering) end
            from (
                select rerankdb.center(long, center, centering)
                         * array_fill((1 - share)::real, array[vector_dims(long)])::vector
                       + rerankdb.center(short, center, centering)
                         * array_fill(share::real, array[vector_dims(long)])::vector
            ) as x(v)
        )
    end
$fn$;
