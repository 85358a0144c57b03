-- Statements of rerankdb/load.py: bulk loading from files.  Rows are COPYed
-- into a session's staging table with their line numbers, checked there,
-- then written through rerankdb's own doors in one transaction.  Loaded once
-- by rerankdb.sqlfiles.queries("load"); each "-- name:" starts a statement.

-- name: dimension
select rerankdb.dimension()

-- name: kinds
select kind from rerankdb.interaction_kinds

-- name: create_items_stage
create temp table _load_items (
    line bigint not null, item_id bigint not null, content text not null, metadata jsonb, embedding vector
)

-- name: copy_items_stage
copy _load_items from stdin with (format binary)

-- name: items_stage_problems
-- An item on two lines: the first one counts, the others are refused.
select s.line, 'item_id',
       'item ' || s.item_id || ' is also on line ' || f.first || ' (one line per item)'
from _load_items s
join (select item_id, min(line) as first from _load_items group by item_id having count(*) > 1) f
  on f.item_id = s.item_id and s.line > f.first
order by s.line

-- name: unstage_items
delete from _load_items where line = any(%(lines)s::bigint[])

-- name: items_stage_counts
select count(*), count(embedding) from _load_items

-- name: items_stage_last_line
select coalesce(max(line), 0) from _load_items

-- name: index_items_stage
-- What the chunks of set_item_vectors walk.
create index on _load_items (line)

-- name: items_to_queue
-- What upsert_items will queue for the encoder (the items_enqueue triggers: a new
-- item, or new content) and set_item_vectors will not take off the queue again.
select count(*)
from _load_items s
left join rerankdb.items i on i.item_id = s.item_id
where s.embedding is null and (i.item_id is null or i.content is distinct from s.content)

-- name: upsert_items
-- As the client's upsert: the file is the truth (a line without metadata
-- means {}), and an unchanged item is not touched, nor queued again.
insert into rerankdb.items as t (item_id, content, metadata)
select item_id, content, coalesce(metadata, '{}') from _load_items
order by item_id
on conflict (item_id) do update
   set content = excluded.content, metadata = excluded.metadata, updated_at = excluded.updated_at
 where (t.content, t.metadata) is distinct from (excluded.content, excluded.metadata)

-- name: set_item_vectors
select rerankdb.set_item_vectors(array_agg(item_id order by line), array_agg(embedding order by line))
from _load_items
where line >= %(lo)s and line < %(hi)s and embedding is not null
having count(*) > 0

-- name: drop_items_stage
drop table if exists _load_items

-- name: owns_item_vectors
select pg_has_role(current_user, c.relowner, 'USAGE')
from pg_class c where c.oid = 'rerankdb.item_vectors'::regclass

-- name: item_vectors_rows
select count(*) from rerankdb.item_vectors

-- name: create_interactions_stage
create temp table _load_interactions (
    line bigint not null, user_id bigint not null, item_id bigint not null, kind text not null,
    weight double precision, context text, occurred_at timestamptz
)

-- name: copy_interactions_stage
copy _load_interactions from stdin with (format binary)

-- name: interactions_stage_problems
-- What the log's own door (rerankdb.check_interactions) would refuse, by line:
-- a time in the future or infinite, a weight beyond +-1e6 (its own or its
-- kind's).  The cheap comparisons first (any time after now(), whatever the
-- tolerance): rerankdb.interaction_problem (a function call) only for the
-- rows they flag.
select s.line,
       case when p.problem like 'weight%%' then 'weight' else 'occurred_at' end,
       p.problem
from _load_interactions s
join rerankdb.interaction_kinds k on k.kind = s.kind
cross join lateral (
    select rerankdb.interaction_problem(coalesce(s.occurred_at, now()), coalesce(s.weight, k.weight)) as problem
) p
where not (coalesce(isfinite(s.occurred_at) and s.occurred_at <= now(), true)
           and coalesce(abs(coalesce(s.weight, k.weight)) <= 1e6, true))
  and p.problem is not null
order by s.line

-- name: unstage_interactions
delete from _load_interactions where line = any(%(lines)s::bigint[])

-- name: queue_by_user
-- For the load's transaction: its insert queues a user whose log it at least
-- doubles for one rebuild, not each row (rerankdb.enqueue_interactions).
select set_config('rerankdb.queue_by_user', 'on', true)

-- name: users_queued
-- How many users the insert queued for a rebuild (0 without queue_by_user).
select coalesce(nullif(current_setting('rerankdb.users_queued', true), ''), '0')::int

-- name: insert_interactions
insert into rerankdb.interactions (user_id, item_id, kind, weight, context, occurred_at)
select user_id, item_id, kind, weight, context, coalesce(occurred_at, now())
from _load_interactions
order by line

-- name: drop_interactions_stage
drop table if exists _load_interactions
