-- rerankdb.check_interaction(): BEFORE INSERT / UPDATE trigger on
-- rerankdb.interactions.  Refuses a row the worker could not fold (see
-- rerankdb.interaction_problem: an infinite or future occurred_at, a weight,
-- its own or its kind's, beyond +-1e6) with a message that says what was wrong and what is
-- expected.  Nothing of the statement is written (the error aborts it).
-- SQLSTATE 22008 (the time) or 22003 (the weight).  The hint names the
-- milliseconds-for-seconds mistake only for a time that looks like one (more
-- than 1e11 seconds after the epoch); another time in the future gets a hint
-- on settings.future_tolerance, an infinite one no hint.
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
    if problem is null then
        return new;
    elsif problem like 'weight%' then
        raise exception 'rerankdb.interactions: %', problem using errcode = '22003';
    elsif not isfinite(new.occurred_at) then
        raise exception 'rerankdb.interactions: %', problem using errcode = '22008';
    elsif extract(epoch from new.occurred_at) > 1e11 then
        raise exception 'rerankdb.interactions: %', problem
            using errcode = '22008',
                  hint = 'times are seconds since the epoch, not milliseconds (to_timestamp(ms / 1000.0))';
    else
        raise exception 'rerankdb.interactions: %', problem
            using errcode = '22008',
                  hint = 'rerankdb.settings.future_tolerance allows for clock skew; '
                         'leave occurred_at out to record the interaction at now()';
    end if;
end
$fn$;
