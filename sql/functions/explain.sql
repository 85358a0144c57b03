-- rerankdb.explain(user_id, item_ids, n): why each item scores as it does for
-- the user: the user's interactions that contribute most to its score, so an
-- application can say "because you watched X".
--
-- Input   user_id   the user
--         item_ids  the items to explain (e.g. the top of rerankdb.rerank)
--         n         reasons per item (default 3)
-- Output  (item_id, because_item_id, contribution, occurred_at): per item, in
--         input order, its n reasons, largest contribution first (ties: the
--         newer, then the smaller id).  Repeated interactions with one item
--         are one reason (their contributions summed; occurred_at the newest).
-- Contribution of an interacted item j to item x: j's share of the user's
-- query vector times its similarity to x, in the space that scored x:
--     (1 - w_x) * a_text(j) * text cosine(j, x) + w_x * a_collab(j) * collab cosine(j, x)
-- where x and j and the user have collaborative vectors (w_x as in
-- rerankdb.rerank), else a_text(j) * text cosine(j, x).  a_space(j) sums, over
-- j's interactions, weight * ((1 - s) * long decay / Z_long + s * short
-- decay / Z_short): the decay 2^(-age / half-life) to the user's newest
-- interaction (settings.half_life, short_half_life), Z the sum of |weight| *
-- decay over the user's interactions, s the space's short-term share.
-- With the sequence space (the user and x have sequence vectors and
-- settings.sequence_weight q > 0), that contribution c becomes
--     (1 - q) * c + q * attention(j) * sequence cosine(j, x)
-- where attention(j) is the share of j in the transformer's last attention
-- at the user's newest position (averaged over heads, summed over j's
-- occurrences in the sequence read), stored by the worker with the user's
-- vector.  Attention, not leave-one-out: it is what the model computed, it
-- costs nothing at query time, and leave-one-out would mean one forward
-- pass per history item at each call (the model runs in the worker, not in
-- SQL).  The
-- contributions rank the reasons; they do not sum to the score (the query
-- vector is also normalized and centered).  Interactions set aside, with an
-- item without a vector, and interaction context text are not counted.
-- NULL    n has a default (3): n NULL is error 22023, as for every option of
--         rerankdb's functions whose default is not NULL.  item_ids NULL:
--         no rows.
-- Edge    an unknown user, a user without interactions or an item without a
--         vector: no rows for it.  n = 0, NULL or empty item_ids: no rows.
--         n NULL or < 0: error 22023.
-- Security: runs with its owner's rights (security definer, search_path
-- pinned, names schema-qualified), so callers need EXECUTE on it and no
-- access to the tables it reads or writes (README, "Roles").
create or replace function rerankdb.explain(
    user_id bigint,
    item_ids bigint[],
    n integer default 3
) returns table (item_id bigint, because_item_id bigint, contribution double precision, occurred_at timestamptz)
language plpgsql stable parallel safe
security definer
set search_path = pg_catalog, public
as $fn$
#variable_conflict use_column
declare
    ref timestamptz;
    hl double precision;
    shl double precision;
    text_short double precision;
    collab_short double precision;
    w double precision;
    shrink double precision;
    has_collab boolean;
    seq_share double precision;
    user_seq vector;
    seq_items bigint[];
    seq_attention real[];
begin
    if n is null or n < 0 then
        raise exception 'rerankdb.explain: n must be >= 0, got %', coalesce(n::text, 'NULL') using errcode = '22023';
    end if;
    if item_ids is null or cardinality(item_ids) = 0 or n = 0 then
        return;
    end if;
    select s.ref_time into ref from rerankdb.user_state s where s.user_id = explain.user_id;
    if ref is null or not isfinite(ref) then
        return;
    end if;
    select extract(epoch from st.half_life), extract(epoch from st.short_half_life), st.short_weight,
           st.collab_short_weight, st.collab_weight, st.collab_shrink, st.sequence_weight
    into hl, shl, text_short, collab_short, w, shrink, seq_share
    from rerankdb.settings st;
    select u.collab is not null and w > 0, u.seq, u.seq_items, u.seq_attention
    into has_collab, user_seq, seq_items, seq_attention
    from rerankdb.user_vectors u where u.user_id = explain.user_id;
    if seq_share is null or seq_share <= 0 or seq_items is null or seq_attention is null then
        user_seq := null;  -- no sequence part
    end if;

    return query
        with events as (
            select i.item_id as because, i.occurred_at, coalesce(i.weight, kd.weight)::float8 as weight,
                   greatest(extract(epoch from ref - i.occurred_at), 0)::float8 as age
            from rerankdb.interactions i
            join rerankdb.interaction_kinds kd on kd.kind = i.kind
            where i.user_id = explain.user_id
              and exists (select 1 from rerankdb.item_rank r where r.item_id = i.item_id)
              and not exists (select 1 from rerankdb.interaction_queue q
                              where q.interaction_id = i.interaction_id and q.user_id = i.user_id
                                and q.attempts > 0)
        ), decayed as (
            -- 2^-age/half-life, exactly 0 past 1000 half-lives (no float underflow)
            select e.*,
                   case when hl is null then 1.0 when e.age / hl > 1000 then 0.0 else power(2.0::float8, -e.age / hl) end as dl,
                   case when e.age / shl > 1000 then 0.0 else power(2.0::float8, -e.age / shl) end as ds
            from events e
        ), z as (
            select nullif(sum(abs(d.weight) * d.dl), 0) as zl, nullif(sum(abs(d.weight) * d.ds), 0) as zs from decayed d
        ), reasons as (
            select d.because, max(d.occurred_at) as occurred_at,
                   sum(d.weight * ((1 - text_short) * coalesce(d.dl / z.zl, 0) + text_short * coalesce(d.ds / z.zs, 0))) as a_text,
                   sum(d.weight * ((1 - collab_short) * coalesce(d.dl / z.zl, 0) + collab_short * coalesce(d.ds / z.zs, 0))) as a_collab
            from decayed d cross join z
            group by d.because
        ), attention as (
            select a.item_id as because, sum(a.share)::float8 as a_seq
            from unnest(seq_items, seq_attention) as a(item_id, share)
            where user_seq is not null
            group by a.item_id
        ), targets as (
            select x.item_id, min(x.pos) as pos
            from unnest(item_ids) with ordinality as x(item_id, pos)
            where x.item_id is not null
            group by x.item_id
        )
        select t.item_id, c.because, c.contribution, c.occurred_at
        from targets t
        join rerankdb.item_rank v on v.item_id = t.item_id
        cross join lateral (
            select b.because, b.occurred_at,
                   case when user_seq is not null and v.seq is not null and b.seq is not null
                             and vector_dims(v.seq) = vector_dims(b.seq)
                        then (1 - seq_share) * b.contribution
                             + seq_share * coalesce(b.a_seq, 0) * -(b.seq <#> v.seq)
                        else b.contribution
                   end as contribution
            from (
                select p.because, p.occurred_at, r.seq, at.a_seq,
                       case when has_collab and v.collab is not null and r.collab is not null
                            then (1 - w * v.support / (v.support + shrink)) * p.a_text * -(r.embedding <#> v.embedding)
                                 + w * v.support / (v.support + shrink) * p.a_collab * -(r.collab <#> v.collab)
                            else p.a_text * -(r.embedding <#> v.embedding)
                       end as contribution
                from reasons p
                join rerankdb.item_rank r on r.item_id = p.because
                left join attention at on at.because = p.because
            ) b
            order by 3 desc, b.occurred_at desc, b.because
            limit n
        ) c
        order by t.pos, c.contribution desc, c.occurred_at desc, c.because;
end
$fn$;
