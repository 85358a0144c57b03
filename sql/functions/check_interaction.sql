-- rerankdb.check_interaction(): BEFORE UPDATE row trigger on
-- rerankdb.interactions, and BEFORE INSERT for a row whose own values may be
-- a problem (the trigger's WHEN, revision 0012; what it cannot see, a kind's
-- weight, is checked per statement: rerankdb.check_interactions).  Refuses a row the worker
-- could not fold (see rerankdb.interaction_problem: an infinite or future
-- occurred_at, a weight, its own or its kind's, beyond +-1e6) with
-- rerankdb.refuse_interaction's error, which says what was wrong and what is
-- expected.  Nothing of the statement is written (the error aborts it).
-- Since revision 0016 (the log has no foreign key on the kinds) an update's
-- new kind must be known too: the key's error otherwise, as
-- rerankdb.check_interactions raises it for an insert.
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
    if tg_op = 'UPDATE' and new.kind is distinct from old.kind then
        perform 1 from rerankdb.interaction_kinds k where k.kind = new.kind for key share;
    end if;
    if tg_op = 'UPDATE' and new.kind is distinct from old.kind and not found then
        raise exception 'insert or update on table "interactions" violates foreign key constraint "interactions_kind_fkey"'
            using errcode = 'foreign_key_violation',
                  detail = format('Key (kind)=(%s) is not present in table "interaction_kinds".', new.kind),
                  hint = 'the kinds are the rows of rerankdb.interaction_kinds: insert the kind there first';
    end if;
    return new;
end
$fn$;
