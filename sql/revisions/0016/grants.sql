-- rerankdb 0016, after its functions: the new trigger functions are nobody's
-- to call (0005's rule: revoked from PUBLIC; they run as their owner's
-- triggers).  Frozen once released.
revoke execute on function rerankdb.unqueue_interactions() from public;
revoke execute on function rerankdb.check_kinds() from public;
