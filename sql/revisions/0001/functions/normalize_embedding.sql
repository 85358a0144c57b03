-- rerankdb.normalize_embedding(): BEFORE INSERT/UPDATE trigger on the vector tables.
--
-- Contract: stores NEW.embedding scaled to unit length, so that the ranking
-- functions can use the inner product as cosine similarity.  Direction, and
-- with it every cosine score, is unchanged.  A zero vector has no direction:
-- it is rejected (SQLSTATE 22023) and nothing is written.  NULL is left to the
-- column's NOT NULL constraint; NaN and infinity are rejected by pgvector.
create or replace function rerankdb.normalize_embedding() returns trigger
language plpgsql
set search_path = pg_catalog, public
as $fn$
begin
    if new.embedding is not null then
        if vector_norm(new.embedding) = 0 then
            raise exception 'rerankdb.%: embedding is a zero vector', tg_table_name
                using errcode = '22023',
                      hint = 'a zero vector has no direction, so cosine similarity is undefined; '
                             'write a non-zero vector, or no row at all';
        end if;
        new.embedding := l2_normalize(new.embedding);
    end if;
    return new;
end
$fn$;
