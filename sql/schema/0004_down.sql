-- rerankdb 0004 downgrade: back to uncentered scoring (0003).
drop function rerankdb.refresh_centers(integer);
alter table rerankdb.settings
    drop column text_center,
    drop column collab_center,
    drop column text_centering,
    drop column collab_centering;
