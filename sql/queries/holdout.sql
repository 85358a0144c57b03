-- Statements of rerankdb/holdout.py: the log and the catalog the tuner holds
-- out from.  Loaded once by rerankdb.sqlfiles.queries("holdout"); each
-- "-- name:" starts a statement.

-- name: log
-- The log as a rebuild folds it (rows set aside are left out), items with a
-- text vector only, oldest first per user: (user, item, weight, epoch seconds).
select i.user_id, i.item_id, coalesce(i.weight, k.weight)::float8, extract(epoch from i.occurred_at)::float8
from rerankdb.interactions i
join rerankdb.interaction_kinds k on k.kind = i.kind
where exists (select 1 from rerankdb.item_rank r where r.item_id = i.item_id)
  and not exists (select 1 from rerankdb.interaction_queue q
                  where q.interaction_id = i.interaction_id and q.user_id = i.user_id and q.attempts > 0)
order by i.user_id, i.occurred_at, i.interaction_id

-- name: catalog
-- Every item rerank can score by its text.
select item_id from rerankdb.item_rank order by item_id
