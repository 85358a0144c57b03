-- rerankdb 0006 downgrade: back to 0005.  The short-term sums and the
-- half-lives in settings go (0005's worker reads RERANKDB_HALF_LIFE_DAYS);
-- the functions 0006 changed are restored after this file.
drop trigger settings_half_life_changed on rerankdb.settings;
drop function rerankdb.notice_half_life_changed();
drop function rerankdb.blend(vector, vector, double precision, vector, double precision);
revoke update (half_life, short_half_life, short_weight, collab_short_weight, collab_weight, collab_shrink,
               text_centering, collab_centering, collab_dim, tuned_at, tune_report)
    on rerankdb.settings from rerankdb_worker;
alter table rerankdb.worker_state drop column states_half_life, drop column states_short_half_life;
alter table rerankdb.settings
    drop column half_life, drop column short_half_life, drop column short_weight,
    drop column collab_short_weight, drop column tuned_at, drop column tune_report;
alter table rerankdb.user_vectors drop column short_embedding, drop column short_collab;
alter table rerankdb.user_vectors reset (toast_tuple_target);
alter table rerankdb.user_state reset (toast_tuple_target);
alter table rerankdb.user_state drop column short_sum, drop column short_collab_sum;
