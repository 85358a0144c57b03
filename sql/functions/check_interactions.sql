-- rerankdb.check_interactions(): AFTER INSERT trigger on
-- rerankdb.interactions, once per statement (revision 0012).  The row
-- trigger rerankdb.check_interaction runs only for a row whose own values
-- may be refused (its WHEN: an infinite or future time, a weight beyond
-- +-1e6); what it no longer sees is a row without a weight of its own whose
-- kind's weight is beyond +-1e6 (a kind created before revision 0005, whose
-- check on kinds did not validate old rows).  This refuses a statement that
-- inserts one, with rerankdb.refuse_interaction's error for the first (lowest
-- interaction_id), and nothing of the statement is written.
-- Since revision 0016 it also does what the log's foreign key on
-- rerankdb.interaction_kinds did (a lookup per inserted row): every kind the
-- statement used is known, else the key's error (foreign_key_violation,
-- naming the kind), and locked as the key locked it (FOR KEY SHARE: a delete
-- or rename of the kind waits for this transaction, and then sees its rows:
-- rerankdb.check_kinds).
-- Set queries over the statement's rows (its transition table, "inserted"):
-- a load of a million rows calls no function per row.
-- Security: runs with its owner's rights (it reads rerankdb.interaction_kinds).
create or replace function rerankdb.check_interactions() returns trigger
language plpgsql
security definer
set search_path = pg_catalog
as $fn$
declare
    bad_time timestamptz;
    problem text;
    used text[];
    unknown text;
begin
    select array_agg(u.kind) into used from (select distinct n.kind from inserted n) u;
    perform 1 from rerankdb.interaction_kinds k where k.kind = any(used) for key share;
    select u.kind into unknown
    from unnest(used) as u(kind)
    where not exists (select 1 from rerankdb.interaction_kinds k where k.kind = u.kind)
    order by u.kind
    limit 1;
    if unknown is not null then
        raise exception 'insert or update on table "interactions" violates foreign key constraint "interactions_kind_fkey"'
            using errcode = 'foreign_key_violation',
                  detail = format('Key (kind)=(%s) is not present in table "interaction_kinds".', unknown),
                  hint = 'the kinds are the rows of rerankdb.interaction_kinds: insert the kind there first';
    end if;
    select n.occurred_at, rerankdb.interaction_problem(n.occurred_at, k.weight)
    into bad_time, problem
    from inserted n
    join rerankdb.interaction_kinds k on k.kind = n.kind
    where n.weight is null
      and not coalesce(abs(k.weight) <= 1e6, true)
      and rerankdb.interaction_problem(n.occurred_at, k.weight) is not null
    order by n.interaction_id
    limit 1;
    if problem is not null then
        perform rerankdb.refuse_interaction(bad_time, problem);
    end if;
    return null;
end
$fn$;
