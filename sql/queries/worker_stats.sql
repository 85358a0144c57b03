-- Statements of rerankdb/worker_stats.py: a worker process's row in
-- rerankdb.workers, and the queues' figures for its Prometheus gauges.
-- Loaded once by rerankdb.sqlfiles.queries("worker_stats"); each "-- name:"
-- starts a statement.

-- name: register_worker
-- This worker process, at its start; workers not seen for a day are gone.
with gone as (
    delete from rerankdb.workers where seen_at < now() - interval '1 day'
)
insert into rerankdb.workers (worker_id, host, pid, started_at, seen_at)
values (%(worker_id)s, %(host)s, %(pid)s, to_timestamp(%(started)s), now())
on conflict (worker_id) do update set seen_at = excluded.seen_at

-- name: publish_worker
-- The process's totals since it started (what its Prometheus endpoint serves).
update rerankdb.workers
   set seen_at = now(), interactions_folded = %(interactions_folded)s, items_embedded = %(items_embedded)s,
       interactions_set_aside = %(interactions_set_aside)s, items_failed = %(items_failed)s,
       users_rebuilt = %(users_rebuilt)s, drains = %(drains)s, busy_seconds = %(busy_seconds)s,
       last_drain_seconds = %(last_drain_seconds)s
 where worker_id = %(worker_id)s

-- name: queue_figures
-- Due work and the age of its oldest row, in seconds (the Prometheus gauges).
select (select count(*) from rerankdb.interaction_queue where not deferred and not_before <= now()),
       (select extract(epoch from now() - min(enqueued_at))::float8 from rerankdb.interaction_queue
         where not deferred and not_before <= now()),
       (select count(*) from rerankdb.item_queue where not_before <= now()),
       (select extract(epoch from now() - min(enqueued_at))::float8 from rerankdb.item_queue
         where not_before <= now())
