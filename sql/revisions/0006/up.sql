-- rerankdb 0006: short-term intent.  Frozen once released.
--
-- Each user keeps a second decayed sum of the same interactions with a short
-- half-life (minutes, not weeks): the direction of what the user did last.
-- rerank, rerank_scored and recommend score with a blend of the long-term and
-- short-term vectors, the weights read from rerankdb.settings at query time.
-- The half-lives move from the worker's environment into rerankdb.settings,
-- so that `rerankdb tune` can set them and every worker folds alike.

-- The short-term sums, decayed to the same ref_time as the long-term ones
-- (NULL: folded before this revision; the worker's first rebuild fills them).
alter table rerankdb.user_state
    add column short_sum vector null,
    add column short_collab_sum vector null;
alter table rerankdb.user_vectors
    add column short_embedding vector null,
    add column short_collab vector null;
-- Twice the vectors per row (3.6 kB at 384-d with 64-d collaborative ones)
-- pass the default 2 kB TOAST threshold: every fold would try to compress
-- float data that does not compress and write it out of line (measured: fold
-- throughput 0.58x).  Keep rows up to a page inline, as item_rank does.
alter table rerankdb.user_state set (toast_tuple_target = 8160);
alter table rerankdb.user_vectors set (toast_tuple_target = 8160);

alter table rerankdb.settings
    -- Half-life of an interaction's weight in the long-term vectors; NULL: no
    -- decay.  Changing it (or short_half_life) needs every user rebuilt: the
    -- worker does so at its next drain (rerankdb rebuild does it at once).
    add column half_life interval null default '30 days'
        check (half_life > interval '0' and half_life < interval '1000 years'),
    add column short_half_life interval not null default '10 minutes'
        check (short_half_life > interval '0' and short_half_life < interval '1000 years'),
    -- Share of the short-term vector in the query vector of each space:
    -- normalize((1 - s) * long + s * short), each centered first.  0: long-term
    -- only (0005's scores); 1: the newest interest only.  Read at query time.
    add column short_weight real not null default 0.5 check (short_weight >= 0 and short_weight <= 1),
    add column collab_short_weight real not null default 0.5
        check (collab_short_weight >= 0 and collab_short_weight <= 1),
    -- What the last `rerankdb tune` measured and chose (NULL: never tuned).
    add column tuned_at timestamptz null,
    add column tune_report jsonb null;

-- The half-lives every user state was last rebuilt with: a worker that finds
-- settings' half-lives different rebuilds every user, then records them here.
-- An install with users gets NULL (their states have no short-term sums yet),
-- so the first drain after the upgrade rebuilds them.
alter table rerankdb.worker_state
    add column states_half_life interval null,
    add column states_short_half_life interval null;
update rerankdb.worker_state w
   set states_half_life = s.half_life, states_short_half_life = s.short_half_life
  from rerankdb.settings s
 where not exists (select 1 from rerankdb.user_state);

create trigger settings_half_life_changed
    after update of half_life, short_half_life on rerankdb.settings
    for each row
    when (old.half_life is distinct from new.half_life or old.short_half_life is distinct from new.short_half_life)
    execute function rerankdb.notice_half_life_changed();

-- What the tuner and a scheduled tune write (the worker role runs them).
grant update (half_life, short_half_life, short_weight, collab_short_weight, collab_weight, collab_shrink,
              text_centering, collab_centering, collab_dim, tuned_at, tune_report)
    on rerankdb.settings to rerankdb_worker;

-- New functions: nobody but the owner and the worker executes them (0005's
-- rule; the readers' functions call blend with their owner's rights).
revoke execute on function rerankdb.blend(vector, vector, double precision, vector, double precision),
    rerankdb.notice_half_life_changed()
    from public;
grant execute on function rerankdb.blend(vector, vector, double precision, vector, double precision),
    rerankdb.notice_half_life_changed()
    to rerankdb_worker;
