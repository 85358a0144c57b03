-- rerankdb.set_user_vectors(user_ids, embeddings): bring your own user
-- embeddings (text space), for roles that may not write
-- rerankdb.user_vectors directly.  Contract as rerankdb.set_item_vectors,
-- without the check that the ids exist (users are not a table).  A vector
-- set here replaces the user's text vectors, long and short term (the
-- worker's short-term vector is cleared until the user's next fold).
create or replace function rerankdb.set_user_vectors(user_ids bigint[], embeddings vector[])
returns bigint
language plpgsql volatile
security definer
set search_path = pg_catalog, public
as $fn$
declare
    n bigint;
begin
    perform rerankdb._check_vector_arguments('set_user_vectors', user_ids, embeddings);
    insert into rerankdb.user_vectors as v (user_id, embedding)
    select x.id, x.e from unnest(user_ids, embeddings) as x(id, e)
    order by x.id
    on conflict (user_id) do update
       set embedding = excluded.embedding, short_embedding = null, updated_at = excluded.updated_at;
    get diagnostics n = row_count;
    return n;
end
$fn$;
