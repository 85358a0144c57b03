-- rerankdb 0004: centered scoring.  Frozen once released.
--
-- Every user vector shares a large common part: in the text space the
-- catalog's "average topic" (sentence encoders put most texts in one narrow
-- cone), in the collaborative space the taste for popular items.  rerank
-- subtracts a share of the average user vector from the user's before the
-- cosine, so items rank by how the user differs from everybody else.
-- Measured on MovieLens (README): text-only NDCG@10 0.16 -> 0.21 (uni100),
-- 0.14 -> 0.22 (pop100); the hybrid gains on pop100.
alter table rerankdb.settings
    -- Averages of the users' vectors, refreshed by rerankdb.refresh_centers()
    -- (run by every training and full rebuild); NULL: not enough users yet,
    -- no centering.
    add column text_center vector null,
    add column collab_center vector null,
    -- Share of the average user vector subtracted: 0 = plain cosine,
    -- 1 = all of it.  In the collaborative space this trades popular items
    -- (0) for each user's own niche (1); see README, "Popular or niche".
    add column text_centering real not null default 1 check (text_centering >= 0 and text_centering <= 1),
    add column collab_centering real not null default 0
        check (collab_centering >= 0 and collab_centering <= 1);
