-- rerankdb.hybrid_key(t, t_weight, c, c_weight, c_dims, q, q_weight, q_dims):
-- one vector of the hybrid index (rerankdb.hybrid_keys): the text part t
-- times t_weight, then the collaborative part c times c_weight (c_dims
-- components; zeros where c is NULL), then the sequence part q times
-- q_weight (q_dims components; zeros where q is NULL).  A space of 0 dims
-- is left out.  The inner product of an item's key (its weights, see
-- rerankdb.refresh_hybrid_keys) with a user's key (weights 1) is rerank's
-- score: the blend is linear in every space.
-- Edge    t NULL: NULL.  c or q of another dimension than c_dims or q_dims:
--         error 22000 (pgvector's "different vector dimensions").
create or replace function rerankdb.hybrid_key(
    t vector,
    t_weight double precision,
    c vector,
    c_weight double precision,
    c_dims integer,
    q vector,
    q_weight double precision,
    q_dims integer
) returns vector
language sql immutable parallel safe
set search_path = pg_catalog, public
as $fn$
    select case when t is null then null
                when c_dims = 0 and q_dims = 0 then tt
                when q_dims = 0 then tt || cc
                when c_dims = 0 then tt || qq
                else tt || cc || qq
           end
    from (select
              t * array_fill(t_weight::real, array[vector_dims(t)])::vector as tt,
              case when c is null or c_weight = 0 then array_fill(0::real, array[greatest(c_dims, 1)])::vector
                   else c * array_fill(c_weight::real, array[c_dims])::vector
              end as cc,
              case when q is null or q_weight = 0 then array_fill(0::real, array[greatest(q_dims, 1)])::vector
                   else q * array_fill(q_weight::real, array[q_dims])::vector
              end as qq) parts
$fn$;
