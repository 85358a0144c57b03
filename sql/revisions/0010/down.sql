-- rerankdb 0010, undone: the status view without set_aside_items (recreated
-- by revision 0009's file, then granted by down_grants.sql), and the
-- worker's EXECUTE on every function of the schema, as revisions 0005-0009
-- left it (the app's and the reader's lists did not change).  Frozen once
-- released.
drop view rerankdb.status;
grant execute on all functions in schema rerankdb to rerankdb_worker;
