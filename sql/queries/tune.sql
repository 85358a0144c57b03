-- Statements of rerankdb/tune.py: read the settings and item vectors, write
-- the chosen settings.  Loaded once by rerankdb.sqlfiles.queries("tune");
-- each "-- name:" starts a statement.

-- name: text_vectors
select item_id, embedding::vector from rerankdb.item_rank where item_id = any(%(items)s::bigint[])

-- name: settings
select extract(epoch from s.half_life)::float8, extract(epoch from s.short_half_life)::float8,
       s.collab_weight, s.collab_shrink, s.text_centering, s.collab_centering,
       s.short_weight, s.collab_short_weight, s.collab_dim,
       (select vector_dims(r.collab) from rerankdb.item_rank r where r.collab is not null limit 1),
       extract(epoch from now())::float8, extract(epoch from s.future_tolerance)::float8,
       s.sequence_weight
from rerankdb.settings s

-- name: exclusive_fold_lock
-- No fold or rebuild runs while the settings and every user switch at once.
select pg_advisory_xact_lock('rerankdb.user_state'::regclass::oid::integer, 1)

-- name: write_settings
update rerankdb.settings
   set half_life = make_interval(secs => %(half_life)s),
       short_half_life = make_interval(secs => %(short_half_life)s),
       collab_weight = %(collab_weight)s, collab_shrink = %(collab_shrink)s,
       text_centering = %(text_centering)s, collab_centering = %(collab_centering)s,
       short_weight = %(short_weight)s, collab_short_weight = %(collab_short_weight)s,
       collab_dim = %(collab_dim)s, sequence_weight = %(sequence_weight)s,
       tuned_at = now(), tune_report = %(report)s

-- name: context_items_weight
select context_items_weight from rerankdb.settings

-- name: write_context_items_weight
update rerankdb.settings set context_items_weight = %(weight)s

-- name: has_context
-- Whether a rebuild needs the encoder (context text is folded through it).
select exists (select 1 from rerankdb.interactions where context is not null and btrim(context) <> '')

-- name: refresh_centers
select rerankdb.refresh_centers()

-- name: hybrid_keys_stale
-- Whether the hybrid index was built with other settings than these (or not
-- at all) on a trained installation: rerankdb.nearest does not use it then.
select st.trained_at is not null
       and not exists (select 1 from rerankdb.hybrid_meta m
                       where m.collab_weight = st.collab_weight and m.collab_shrink = st.collab_shrink
                         and m.sequence_weight = st.sequence_weight
                         and m.trained_at is not distinct from st.trained_at)
from rerankdb.settings st

-- name: refresh_hybrid_keys
select rerankdb.refresh_hybrid_keys()
