-- rerankdb 0001 downgrade: remove everything rerankdb installed.  The vector
-- extension goes too, unless objects outside rerankdb still use it.
drop schema rerankdb cascade;

do $$
begin
    drop extension if exists vector;
exception when dependent_objects_still_exist then
    raise notice 'rerankdb: kept extension vector, which other objects still use';
end
$$;
