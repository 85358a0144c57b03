-- rerankdb.check_interaction(): BEFORE UPDATE row trigger on
-- rerankdb.interactions, and BEFORE INSERT for a row whose own values may be
-- a problem (the trigger's WHEN, revision 0012; what it cannot see, a kind's
-- weight, is checked per statement: rerankdb.check_interactions).  Refuses a row the worker
-- could not fold (see rerankdb.interaction_problem: an infinite or future
-- occurred_at, a weight, its own or its kind's, beyond +-1e6) with
-- rerankdb.refuse_interaction's error, which says what was wrong and what is
-- expected.  Nothing of the statement is written (the error aborts it).
create or replace function rerankdb.check_interaction() returns trigger
language plpgsql
security definer
set search_path = pg_catalog
as $fn$
declare
    problem text := rerankdb.interaction_problem(
        new.occurred_at,
        coalesce(new.weight, (select k.weight from rerankdb.interaction_kinds k where k.kind = new.kind))
    );
begin
    if problem is not null then
        perform rerankdb.refuse_interaction(new.occurred_at, problem);
    end if;
    return new;
end
$fn$;
