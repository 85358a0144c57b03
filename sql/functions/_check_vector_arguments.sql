-- rerankdb._check_vector_arguments(caller, ids, embeddings): the argument
-- checks rerankdb.set_item_vectors and set_user_vectors share.  Raises 22023
-- for lengths that differ, a NULL id or vector, or an id given twice.
create or replace function rerankdb._check_vector_arguments(caller text, ids bigint[], embeddings vector[])
returns void
language plpgsql immutable
set search_path = pg_catalog, public
as $fn$
declare
    repeated bigint;
begin
    if coalesce(cardinality(ids), 0) <> coalesce(cardinality(embeddings), 0) then
        raise exception 'rerankdb.%: got % ids but % embeddings', caller,
                        coalesce(cardinality(ids), 0), coalesce(cardinality(embeddings), 0)
            using errcode = '22023';
    end if;
    if exists (select 1 from unnest(ids) as u(id) where u.id is null)
       or exists (select 1 from unnest(embeddings) as u(e) where u.e is null) then
        raise exception 'rerankdb.%: ids and embeddings must not contain NULL', caller using errcode = '22023';
    end if;
    select u.id into repeated from unnest(ids) as u(id) group by u.id having count(*) > 1 limit 1;
    if repeated is not null then
        raise exception 'rerankdb.%: id % appears more than once', caller, repeated using errcode = '22023';
    end if;
end
$fn$;
