-- rerankdb.notify_worker(): AFTER ... FOR EACH STATEMENT trigger on
-- rerankdb.items and rerankdb.interactions.  Wakes listening workers on the
-- channel 'rerankdb_work' once per statement; PostgreSQL delivers the
-- notification at commit (never for a rolled-back write) and folds duplicates
-- within a transaction.  The worker also polls, so a lost wake-up only delays.
create or replace function rerankdb.notify_worker() returns trigger
language plpgsql
set search_path = pg_catalog
as $fn$
begin
    perform pg_notify('rerankdb_work', tg_table_name);
    return null;
end
$fn$;
