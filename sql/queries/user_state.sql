-- Statements of rerankdb/user_state.py: user states locked, read and written
-- inside a fold or rebuild transaction (rerankdb/user_refresh.py).  Loaded
-- once by rerankdb.sqlfiles.queries("user_state"); each "-- name:" starts a
-- statement.

-- name: batch_item_vectors
-- (text, collaborative) vectors of the distinct items of a batch.
select item_id, embedding::vector, collab from rerankdb.item_rank where item_id = any(%(items)s::bigint[])

-- name: create_placeholder_states
-- An empty state for each user that has none: a concurrent worker creating
-- the same user makes this wait for its commit, so the locked read that
-- follows is never stale.
insert into rerankdb.user_state (user_id, weighted_sum, ref_time)
select u, array_fill(0, array[%(dim)s])::vector, '-infinity'
from unnest(%(users)s::bigint[]) as u
order by u
on conflict (user_id) do nothing

-- name: lock_states
select user_id, weighted_sum, extract(epoch from ref_time)::float8, interactions, collab_sum,
       short_sum, short_collab_sum
from rerankdb.user_state
where user_id = any(%(users)s::bigint[])
order by user_id
for update

-- name: create_state_stage
-- Created by the first batch of a session (and again if that batch rolled back).
create temp table if not exists _user_state (
    user_id bigint, weighted_sum vector, ref float8, interactions bigint, collab_sum vector,
    short_sum vector, short_collab_sum vector
) on commit delete rows

-- name: clear_state_stage
-- A transaction that writes several batches (a training's rebuild of every
-- user) must write each batch alone: the stage empties only at the commit.
delete from _user_state

-- name: copy_state_stage
copy _user_state from stdin with (format binary)

-- name: write_states
update rerankdb.user_state u
   set weighted_sum = s.weighted_sum,
       ref_time = coalesce(to_timestamp(s.ref), '-infinity'),
       interactions = s.interactions,
       collab_sum = s.collab_sum,
       short_sum = s.short_sum,
       short_collab_sum = s.short_collab_sum,
       updated_at = now()
  from _user_state s
 where u.user_id = s.user_id

-- name: write_user_vectors
-- The vector table's trigger normalizes the text vector; the others are
-- normalized here.  A sum without direction (norm <= eps) gives no vector.
-- The sequence vectors come as parameters (rerankdb/sequence_space.py,
-- user_rows: the items and the attention as array literals, their lengths
-- differ by user), written in the same statement: one new version of the
-- row per fold.  A user without one (no model) gets NULL.
insert into rerankdb.user_vectors (
    user_id, embedding, collab, short_embedding, short_collab, seq, seq_items, seq_attention)
select s.user_id, s.weighted_sum,
       case when vector_norm(s.collab_sum) > %(eps)s then l2_normalize(s.collab_sum) end,
       case when vector_norm(s.short_sum) > %(eps)s then l2_normalize(s.short_sum) end,
       case when vector_norm(s.short_collab_sum) > %(eps)s then l2_normalize(s.short_collab_sum) end,
       q.seq, q.seq_items::bigint[], q.seq_attention::real[]
from _user_state s
left join unnest(%(seq_users)s::bigint[], %(seq_vectors)s::vector[], %(seq_items)s::text[],
                 %(seq_attention)s::text[]) as q(user_id, seq, seq_items, seq_attention)
       on q.user_id = s.user_id
where vector_norm(s.weighted_sum) > %(eps)s
order by s.user_id
on conflict (user_id) do update
   set embedding = excluded.embedding, collab = excluded.collab,
       short_embedding = excluded.short_embedding, short_collab = excluded.short_collab,
       seq = excluded.seq, seq_items = excluded.seq_items, seq_attention = excluded.seq_attention,
       updated_at = excluded.updated_at  -- the default, now() (Citus: no function in DO UPDATE)

-- name: delete_directionless_user_vectors
delete from rerankdb.user_vectors v
using _user_state s
where v.user_id = s.user_id and vector_norm(s.weighted_sum) <= %(eps)s


-- name: snapshots
-- The compacted history of some users (revision 0009, rerankdb compact):
-- sums over the interactions deleted from the log, which a rebuild starts
-- from.  collab_current: the collaborative sums are in today's space (no
-- training since they were folded); else they count as empty.
select p.user_id, p.weighted_sum, extract(epoch from p.ref_time)::float8, p.interactions, p.collab_sum,
       p.short_sum, p.short_collab_sum, p.collab_trained_at is not distinct from s.trained_at
from rerankdb.user_snapshot p
cross join rerankdb.settings s
where p.user_id = any(%(users)s::bigint[])
order by p.user_id

-- name: create_snapshot_stage
create temp table if not exists _user_snapshot (
    user_id bigint, weighted_sum vector, ref float8, interactions bigint, collab_sum vector,
    short_sum vector, short_collab_sum vector
) on commit delete rows

-- name: clear_snapshot_stage
delete from _user_snapshot

-- name: copy_snapshot_stage
copy _user_snapshot from stdin with (format binary)

-- name: write_snapshots
-- The half-lives and the collaborative space are the transaction's (its
-- snapshot of settings, read after the fold lock).
insert into rerankdb.user_snapshot as p (
    user_id, weighted_sum, ref_time, interactions, collab_sum, short_sum, short_collab_sum,
    collab_trained_at, half_life, short_half_life, compacted_before)
select t.user_id, t.weighted_sum, to_timestamp(t.ref), t.interactions, t.collab_sum, t.short_sum,
       t.short_collab_sum, s.trained_at, s.half_life, s.short_half_life, %(before)s
from _user_snapshot t
cross join rerankdb.settings s
order by t.user_id
on conflict (user_id) do update
   set weighted_sum = excluded.weighted_sum, ref_time = excluded.ref_time,
       interactions = excluded.interactions, collab_sum = excluded.collab_sum,
       short_sum = excluded.short_sum, short_collab_sum = excluded.short_collab_sum,
       collab_trained_at = excluded.collab_trained_at, half_life = excluded.half_life,
       short_half_life = excluded.short_half_life,
       compacted_before = greatest(p.compacted_before, excluded.compacted_before), updated_at = excluded.updated_at
