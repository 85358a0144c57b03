-- rerankdb guard, run before the schema is dropped (downgrade to base):
-- refuse while objects outside schema rerankdb depend on objects inside it
-- (a view on rerankdb.items, a foreign key to it, a function returning its
-- rows), naming them.  `drop schema rerankdb cascade` would drop them
-- silently.  `alembic -x cascade=true downgrade base` skips this check.
do $$
declare
    dependents text;
begin
    with inside as (
        select 'pg_class'::regclass as classid, c.oid from pg_class c
        where c.relnamespace = 'rerankdb'::regnamespace
        union all
        select 'pg_type'::regclass, t.oid from pg_type t where t.typnamespace = 'rerankdb'::regnamespace
        union all
        select 'pg_proc'::regclass, p.oid from pg_proc p where p.pronamespace = 'rerankdb'::regnamespace
    ), dependent as (
        select d.classid, d.objid, d.objsubid,
               -- the relation a rule, constraint, trigger or default belongs to
               coalesce(
                   (select r.ev_class from pg_rewrite r where d.classid = 'pg_rewrite'::regclass and r.oid = d.objid),
                   (select k.conrelid from pg_constraint k where d.classid = 'pg_constraint'::regclass and k.oid = d.objid),
                   (select g.tgrelid from pg_trigger g where d.classid = 'pg_trigger'::regclass and g.oid = d.objid),
                   (select a.adrelid from pg_attrdef a where d.classid = 'pg_attrdef'::regclass and a.oid = d.objid),
                   case when d.classid = 'pg_class'::regclass then d.objid end
               ) as relid,
               (select p.pronamespace from pg_proc p where d.classid = 'pg_proc'::regclass and p.oid = d.objid) as procns,
               (select t.typnamespace from pg_type t where d.classid = 'pg_type'::regclass and t.oid = d.objid) as typns
        from pg_depend d
        join inside i on i.classid = d.refclassid and i.oid = d.refobjid
        where d.deptype in ('n', 'a')
    )
    select string_agg(distinct pg_describe_object(x.classid, x.objid, x.objsubid), ', ')
    into dependents
    from dependent x
    left join pg_class c on c.oid = x.relid
    where coalesce(c.relnamespace, x.procns, x.typns) is distinct from 'rerankdb'::regnamespace
      and coalesce(c.relnamespace, x.procns, x.typns) is not null;
    if dependents is not null then
        raise exception 'rerankdb: not removing schema rerankdb: objects outside it depend on it: %', dependents
            using errcode = '2BP01',
                  hint = 'drop or change them first, or force with: alembic -x cascade=true downgrade base '
                         '(which drops them too)';
    end if;
end
$$;
