-- rerankdb.refresh_centers(min_users): recompute the average user vectors
-- that rerankdb.rerank centers with (rerankdb.settings.text_center and
-- collab_center).
--
-- Input   min_users  below this many users with a vector the centers are set
--                    to NULL (no centering): with few users the average is
--                    mostly each user's own taste.  Default 50; must be >= 1.
-- Output  the number of users the text center averages (0 when NULL).
-- Called by every training and full rebuild; cheap (one pass over
-- user_vectors), safe to run at any time.  The collaborative center averages
-- only the vectors of the most common collaborative dimension (a retraining
-- may change it while users are being rebuilt).
create or replace function rerankdb.refresh_centers(min_users integer default 50)
returns integer
language plpgsql volatile
set search_path = pg_catalog, public
as $fn$
declare
    n integer;
    n_collab integer;
    t vector;
    c vector;
begin
    if min_users is null or min_users < 1 then
        raise exception 'rerankdb.refresh_centers: min_users must be >= 1, got %', coalesce(min_users::text, 'NULL')
            using errcode = '22023';
    end if;
    select count(*), avg(u.embedding) into n, t from rerankdb.user_vectors u;
    select count(*), avg(u.collab) into n_collab, c
    from rerankdb.user_vectors u
    where vector_dims(u.collab) = (
        select vector_dims(x.collab) from rerankdb.user_vectors x
        where x.collab is not null
        group by 1 order by count(*) desc, 1 limit 1
    );
    update rerankdb.settings
    set text_center = case when n >= min_users then t end,
        collab_center = case when n_collab >= min_users then c end;
    return case when n >= min_users then n else 0 end;
end
$fn$;
