-- rerankdb 0009, undone.  The compacted interactions are not brought back:
-- after a downgrade a rebuild counts only the log that is left.  Frozen once
-- released.
drop view rerankdb.status;  -- recreated without the compaction columns, then granted again
drop table rerankdb.workers;
alter table rerankdb.worker_state drop column last_compact_at, drop column compacted_before;
drop table rerankdb.user_snapshot;
drop index rerankdb.interaction_queue_partition_idx;
alter table rerankdb.interaction_queue drop column user_id;
