-- rerankdb.check_kinds(): triggers on rerankdb.interaction_kinds (revision
-- 0016), the rules of the foreign key the log had on it, which checked every
-- inserted row of the log one lookup at a time (now a set query per
-- statement: rerankdb.check_interactions):
--   AFTER DELETE, once per statement: a kind the log still uses is not
--   deleted (the key's error, foreign_key_violation, naming the kind);
--   BEFORE TRUNCATE: the kinds are not truncated while the log has rows;
--   AFTER UPDATE of kind, per row: the log's rows of the old name take the
--   new one (as ON UPDATE CASCADE did).
-- A delete or rename waits for the transactions inserting rows of the kind
-- (they hold it FOR KEY SHARE) and then sees their rows.  Reads the log
-- without an index on kind: a delete of a kind scans the log (rare).
-- On Citus the layout drops these triggers and adds the key back.
create or replace function rerankdb.check_kinds() returns trigger
language plpgsql
security definer
set search_path = pg_catalog
as $fn$
declare
    used text;
begin
    if tg_op = 'UPDATE' then
        update rerankdb.interactions set kind = new.kind where kind = old.kind;
        return null;
    end if;
    if tg_op = 'TRUNCATE' then
        select i.kind into used from rerankdb.interactions i limit 1;
    else
        select d.kind into used
        from deleted d
        where exists (select 1 from rerankdb.interactions i where i.kind = d.kind)
        order by d.kind
        limit 1;
    end if;
    if used is not null then
        raise exception 'update or delete on table "interaction_kinds" violates foreign key constraint "interactions_kind_fkey" on table "interactions"'
            using errcode = 'foreign_key_violation',
                  detail = format('Key (kind)=(%s) is still referenced from table "interactions".', used),
                  hint = 'a kind the log uses stays; delete or compact its interactions first';
    end if;
    return null;
end
$fn$;
