-- rerankdb.refuse_interaction(occurred_at, problem): raise the error that
-- refuses an interaction the worker could not fold, for the log's checks
-- (rerankdb.check_interactions on insert, rerankdb.check_interaction on
-- update).  problem is rerankdb.interaction_problem's text for the row.
-- SQLSTATE 22008 (the time) or 22003 (the weight).  The hint names the
-- milliseconds-for-seconds mistake only for a time that looks like one (more
-- than 1e11 seconds after the epoch); another time in the future gets a hint
-- on settings.future_tolerance, an infinite one no hint.  Never returns.
create or replace function rerankdb.refuse_interaction(occurred_at timestamptz, problem text)
returns void
language plpgsql immutable
set search_path = pg_catalog
as $fn$
begin
    if problem like 'weight%' then
        raise exception 'rerankdb.interactions: %', problem using errcode = '22003';
    elsif not isfinite(occurred_at) then
        raise exception 'rerankdb.interactions: %', problem using errcode = '22008';
    elsif extract(epoch from occurred_at) > 1e11 then
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
