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
-- PL/pgSQL, one call: nested SQL functions measured ~70 us at 384-d, this
-- ~15 us (an inlined SQL expression with the same guards: ~18 us).
-- normalize((1 - s) a + s b) = normalize(a + s / (1 - s) b): one scalar
-- product (pgvector has none: an array_fill vector, elementwise).
create or replace function rerankdb.blend(
    long vector, short vector, share double precision, center vector, centering double precision
) returns vector
language plpgsql immutable parallel safe
set search_path = pg_catalog, public
as $fn$
declare
    c vector;
    l vector := long;
    s vector := short;
    q vector;
begin
    if long is null then
        return null;
    end if;
    if center is not null and centering > 0 and vector_dims(center) = vector_dims(long) then
        c := case when centering = 1 then center
                  else center * array_fill(centering::real, array[vector_dims(center)])::vector end;
        q := long - c;
        l := case when vector_norm(q) > 1e-6 then l2_normalize(q) else long end;
    end if;
    if short is null or share is null or share <= 0 or vector_dims(short) <> vector_dims(long) then
        return l;
    end if;
    if c is not null then
        q := short - c;
        s := case when vector_norm(q) > 1e-6 then l2_normalize(q) else short end;
    end if;
    if share >= 1 then
        return s;
    end if;
    q := l + s * array_fill((share / (1 - share))::real, array[vector_dims(s)])::vector;
    return case when vector_norm(q) > 1e-6 then l2_normalize(q) else l end;
end
$fn$;
