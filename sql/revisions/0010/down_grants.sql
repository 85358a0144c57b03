-- rerankdb 0010, undone: the status view, recreated, is readable as before
-- (as revision 0005 granted it).  Frozen once released.
grant select on rerankdb.status to rerankdb_app, rerankdb_worker;
