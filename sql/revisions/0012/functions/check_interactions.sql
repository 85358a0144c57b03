-- rerankdb.check_interactions(): AFTER INSERT trigger on
-- rerankdb.interactions, once per statement (revision 0012).  The row
-- trigger rerankdb.check_interaction runs only for a row whose own values
-- may be refused (its WHEN: an infinite or future time, a weight beyond
-- +-1e6); what it no longer sees is a row without a weight of its own whose
-- kind's weight is beyond +-1e6 (a kind created before revision 0005, whose
-- check on kinds did not validate old rows).  This refuses a statement that
-- inserts one, with rerankdb.refuse_interaction's error for the first (lowest
-- interaction_id), and nothing of the statement is written.
-- One set query over the statement's rows (its transition table,
-- "inserted"): a load of a million rows calls no function per row.
-- Security: runs with its owner's rights (it reads rerankdb.interaction_kinds).
create or replace function rerankdb.check_interactions() returns trigger
language plpgsql
security definer
set search_path = pg_catalog
as $fn$
declare
    bad_time timestamptz;
    problem text;
begin
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
