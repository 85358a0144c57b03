-- rerankdb 0004 downgrade: back to uncentered scoring (0003).
drop function rerankdb.refresh_centers(integer);
drop function rerankdb.center(vector, vector, double precision);
alter table rerankdb.settings
    drop column text_center,
    drop column collab_center,
    drop column text_centering,
    drop column collab_centering;
