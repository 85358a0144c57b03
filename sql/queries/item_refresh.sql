-- Statements of rerankdb/item_refresh.py: embedding queued items.
--
-- Claimed items get a lease (not_before) in a short transaction and are
-- embedded outside any transaction; their vectors are written, and their
-- queue rows deleted, only if the text is still the one embedded and the
-- item was not queued again meanwhile.  Loaded once by
-- rerankdb.sqlfiles.queries("item_refresh"); each "-- name:" starts a statement.

-- name: claim_items
-- Due items (never failed, or past their backoff) get a lease of %(lease)s
-- seconds: at most %(limit)s, and no more once the texts claimed hold
-- %(budget)s characters (each counted up to %(max_chars)s, what the encoder
-- reads; octet_length reads no toasted text), so that one round of the drain
-- embeds a bounded amount of text; the first item always.  The items left out
-- are locked only until this transaction ends.
with due as (
    select item_id, not_before from rerankdb.item_queue
    where not_before <= clock_timestamp()
    order by not_before, item_id
    limit %(limit)s
    for update skip locked
), costed as (
    select d.item_id,
           coalesce(sum(least(coalesce(octet_length(i.content), 0), %(max_chars)s) + 1)
                    over (order by d.not_before, d.item_id
                          rows between unbounded preceding and 1 preceding), 0) as before
    from due d
    left join rerankdb.items i on i.item_id = d.item_id
)
update rerankdb.item_queue q
   set not_before = now() + make_interval(secs => %(lease)s)  -- (Citus: no volatile function in an UPDATE)
  from costed c
 where q.item_id = c.item_id and c.before < %(budget)s
returning q.item_id, q.enqueued_at, q.attempts

-- name: item_texts
-- Each claimed item's text as far as the encoder reads it (its first
-- %(max_chars)s characters: a 10 MB text is not sent), the SHA-256 of all of
-- it, and what its current vector was made from.
select i.item_id, left(i.content, %(max_chars)s), sha256(convert_to(i.content, 'UTF8')),
       v.content_sha256, v.model
from rerankdb.items i
left join rerankdb.item_vectors v on v.item_id = i.item_id
where i.item_id = any(%(items)s::bigint[])

-- name: create_vector_stage
create temp table if not exists _item_vectors (
    item_id bigint, embedding vector, content_sha256 bytea
) on commit delete rows

-- name: clear_vector_stage
-- (The stage empties at the commit; a transaction may fill it more than once.)
delete from _item_vectors

-- name: copy_vector_stage
copy _item_vectors from stdin with (format binary)

-- name: write_vectors
-- Only where the text is still what was embedded (else it is queued again).
insert into rerankdb.item_vectors (item_id, embedding, content_sha256, model)
select s.item_id, s.embedding, s.content_sha256, %(model)s
from _item_vectors s
join rerankdb.items i
  on i.item_id = s.item_id and sha256(convert_to(i.content, 'UTF8')) = s.content_sha256
order by s.item_id
on conflict (item_id) do update
   set embedding = excluded.embedding, content_sha256 = excluded.content_sha256,
       model = excluded.model, updated_at = excluded.updated_at

-- name: enqueue_unembedded
-- On Citus, where the items' triggers cannot queue them (a reference table's
-- trigger cannot write another table): the items with no vector, or with a
-- vector made from another text, that are not queued, queued now.  Reads
-- every item's text (its hash); on one node the triggers queue instead.
insert into rerankdb.item_queue (item_id)
select i.item_id
from rerankdb.items i
left join rerankdb.item_vectors v on v.item_id = i.item_id
where (v.item_id is null or v.content_sha256 is distinct from sha256(convert_to(i.content, 'UTF8')))
  and not exists (select 1 from rerankdb.item_queue q where q.item_id = i.item_id)
order by i.item_id
on conflict (item_id) do nothing

-- name: sync_rank_of_staged
-- On Citus, the item_vectors triggers' work, by the writer: the copies in
-- item_rank of the vectors just written ...
insert into rerankdb.item_rank as r (item_id, embedding)
select v.item_id, v.embedding from rerankdb.item_vectors v
where v.item_id = any(%(items)s::bigint[])
order by v.item_id
on conflict (item_id) do update set embedding = excluded.embedding

-- name: release_deferred_of_items
-- ... and the interactions that waited for them, due now.
update rerankdb.interaction_queue q set deferred = false
where q.deferred and q.item_id = any(%(items)s::bigint[])

-- name: dequeue_items
-- Only the queue rows claimed: an item queued again meanwhile stays queued.
delete from rerankdb.item_queue q
using unnest(%(items)s::bigint[], %(enqueued)s::timestamptz[]) as f(id, at)
where q.item_id = f.id and q.enqueued_at = f.at

-- name: record_failure
update rerankdb.item_queue
   set attempts = %(attempts)s, last_error = %(error)s,
       not_before = now() + make_interval(secs => %(backoff)s)
 where item_id = %(item)s and enqueued_at = %(enqueued)s

-- name: set_aside_item
-- Empty or blank content: nothing to embed, no retry.  not_before 'infinity'
-- keeps it from every claim (and from the status view's lag) until a change
-- of its content queues it afresh (rerankdb.enqueue_item).
update rerankdb.item_queue
   set attempts = attempts + 1, last_error = 'empty content: nothing to embed', not_before = 'infinity'
 where item_id = %(item)s and enqueued_at = %(enqueued)s

-- name: mark_item_refresh
update rerankdb.worker_state set last_item_refresh_at = now(), model = %(model)s

-- name: requeue_all_items
-- Every item queued afresh (after a model change); unchanged ones cost a hash.
insert into rerankdb.item_queue (item_id)
select item_id from rerankdb.items
on conflict (item_id) do update
   set enqueued_at = excluded.enqueued_at, attempts = 0, last_error = null, not_before = '-infinity'
