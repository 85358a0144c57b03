-- rerankdb 0016, after its function: the trigger function is nobody's to
-- call (0005's rule: revoked from PUBLIC; it runs as its owner's trigger).
-- Frozen once released.
revoke execute on function rerankdb.unqueue_interactions() from public;
