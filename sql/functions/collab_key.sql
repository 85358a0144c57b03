-- rerankdb.collab_key(v): the key of a collaborative vector in the HNSW index
-- of rerankdb.collab_keys (rerankdb.refresh_collab_keys): its last 64
-- components, zero-padded below 64, at unit length.  One index for every
-- collaborative dimension (training may change the dimension; an HNSW index
-- needs a fixed one).  The components come in ascending order of their
-- singular value (rerankdb/train.py), so the last 64 carry most of the
-- similarity; the
-- index finds candidates, and rerankdb.nearest scores them with the whole
-- vectors.
create or replace function rerankdb.collab_key(v vector)
returns vector
language sql immutable strict parallel safe
set search_path = pg_catalog, public
as $fn$
    select l2_normalize(case when vector_dims(v) >= 64 then subvector(v, vector_dims(v) - 63, 64)
                             else v || array_fill(0::real, array[64 - vector_dims(v)])::vector end)
$fn$;
