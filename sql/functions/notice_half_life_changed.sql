-- rerankdb.notice_half_life_changed(): AFTER UPDATE trigger on
-- rerankdb.settings, when half_life or short_half_life changes.  Says that
-- the user states follow only after a rebuild (the running worker does it at
-- its next drain; `rerankdb rebuild` does it now; `rerankdb tune` rebuilds
-- itself).  Blend weights need no rebuild and raise nothing.
create or replace function rerankdb.notice_half_life_changed() returns trigger
language plpgsql
set search_path = pg_catalog
as $fn$
begin
    raise notice 'rerankdb: half-life changed (half_life % -> %, short_half_life % -> %); every user is '
                 'rebuilt with it by the worker''s next drain, or now by `rerankdb rebuild`',
        coalesce(old.half_life::text, 'none'), coalesce(new.half_life::text, 'none'),
        old.short_half_life, new.short_half_life;
    return null;
end
$fn$;
