-- rerankdb.interaction_problem(occurred_at, weight): why an interaction
-- cannot be folded into its user's vector, or NULL if it can.
--
--   * occurred_at infinite, or later than now() + settings.future_tolerance
--     (default 5 minutes of clock skew).  A time in the future would become
--     the user's reference time and decay every later interaction to nothing;
--     the usual cause is milliseconds passed as seconds.
--   * a weight (the interaction's, else its kind's) beyond +-1e6, so that no
--     sum of weights can overflow.
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
        when occurred_at > now() + s.future_tolerance then
            'occurred_at ' || occurred_at::text || ' is in the future (more than '
            || s.future_tolerance::text || ' after now(), ' || now()::text || ')'
        when abs(weight) > 1e6 then
            'weight must be between -1e6 and 1e6, got ' || weight::text
    end
    from rerankdb.settings s
$fn$;
