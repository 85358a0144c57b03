-- rerankdb.interaction_problem(occurred_at, weight): why an interaction
-- cannot be folded into its user's vector, or NULL if it can.
--
--   * occurred_at infinite: "occurred_at must be a finite time, got infinity".
--   * occurred_at later than now() + settings.future_tolerance (default 5
--     minutes of clock skew): "occurred_at ... is in the future by <how far>
--     (future_tolerance is <tolerance>)".  A time in the future would become
--     the user's reference time and decay every later interaction to nothing.
--     A time more than 1e11 seconds after the epoch (beyond the year 5138)
--     is almost surely milliseconds passed as seconds, and the message says so.
--   * a weight (the interaction's, else its kind's) beyond +-1e6, so that no
--     sum of weights can overflow.
-- NULL occurred_at or weight: not a problem (NULL).
-- The door (rerankdb.check_interaction) refuses such rows; the worker sets
-- aside any that got in before the door existed.
create or replace function rerankdb.interaction_problem(occurred_at timestamptz, weight double precision)
returns text
language sql stable parallel safe
security definer
set search_path = pg_catalog
as $fn$
    select case
        when not isfinite(occurred_at) then
            'occurred_at must be a finite time, got ' || occurred_at::text
        when occurred_at > now() + s.future_tolerance and extract(epoch from occurred_at) > 1e11 then
            'occurred_at ' || occurred_at::text || ' is in the future, '
            || extract(epoch from occurred_at)::bigint::text || ' seconds after the epoch: '
            || 'milliseconds passed as seconds? (divide by 1000)'
        when occurred_at > now() + s.future_tolerance then
            'occurred_at ' || occurred_at::text || ' is in the future by '
            || justify_interval(case when occurred_at - now() >= interval '1 second'
                                     then date_trunc('second', occurred_at - now())
                                     else date_trunc('milliseconds', occurred_at - now()) end)::text
            || ' (future_tolerance is ' || s.future_tolerance::text || ')'
        when abs(weight) > 1e6 then
            'weight must be between -1e6 and 1e6, got ' || weight::text
    end
    from rerankdb.settings s
$fn$;
