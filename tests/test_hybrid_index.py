"""The hybrid index (revision 0014): one HNSW index whose inner product is rerank's score.

Each test builds a catalog with text, collaborative and sequence vectors (some
items without the last two), and checks recommend and similar_items against
rerank's own scores over the whole catalog, the keys' algebra exactly, and the
paths around the index: items embedded since the build, settings changed by
hand, a build racing a writer, dimensions past pgvector's limit.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import psycopg
import pytest
from pgvector import Vector

from rerankdb import Client, db
from tests.helpers import load_items, unit

DIM = 384
N = 600
COLLAB_DIM, SEQ_DIM = 16, 8
WEIGHT, SHRINK, SEQ_WEIGHT = 0.7, 5.0, 0.3


def vec(v: np.ndarray) -> Vector:
    return Vector(np.asarray(v, dtype=np.float32))


@pytest.fixture
def world(conn: psycopg.Connection[Any], client: Client, rng: np.random.Generator) -> list[int]:
    """N clustered items: 500 with a collaborative vector, 450 with a sequence vector (not
    the same ones), trained settings, users 1..5 with every vector; the index built."""
    centers = rng.standard_normal((20, DIM))
    label = rng.integers(0, 20, N)
    ids = load_items(client, centers[label] + 0.8 * rng.standard_normal((N, DIM)))
    collab = unit(rng.standard_normal((20, COLLAB_DIM))[label] + 0.5 * rng.standard_normal((N, COLLAB_DIM)))
    seq = unit(rng.standard_normal((20, SEQ_DIM))[label] + 0.5 * rng.standard_normal((N, SEQ_DIM)))
    with_collab, with_seq = ids[:500], ids[150:]
    conn.execute(
        "update rerankdb.item_rank r set collab = c.v, support = c.s"
        " from unnest(%s::bigint[], %s::vector[], %s::int[]) as c(id, v, s) where r.item_id = c.id",
        [with_collab, [vec(collab[i - 1]) for i in with_collab], rng.integers(1, 40, 500).tolist()],
    )
    conn.execute(
        "update rerankdb.item_rank r set seq = c.v from unnest(%s::bigint[], %s::vector[]) as c(id, v)"
        " where r.item_id = c.id",
        [with_seq, [vec(seq[i - 1]) for i in with_seq]],
    )
    for user in range(1, 6):
        conn.execute(
            "insert into rerankdb.user_vectors (user_id, embedding, collab, seq) values (%s, %s, %s, %s)",
            [
                user,
                vec(unit(rng.standard_normal(DIM) + centers[user])),
                vec(unit(rng.standard_normal(COLLAB_DIM))),
                vec(unit(rng.standard_normal(SEQ_DIM))),
            ],
        )
    conn.execute(
        "update rerankdb.settings set collab_weight = %s, collab_shrink = %s, sequence_weight = %s,"
        " trained_at = now()",
        [WEIGHT, SHRINK, SEQ_WEIGHT],
    )
    conn.execute("select rerankdb.refresh_collab_keys()")
    assert conn.execute("select rerankdb.refresh_hybrid_keys()").fetchone() == (N,)
    return ids


def exact(conn: Any, user: int, k: int, exclude_seen: bool = True) -> list[tuple[int, float]]:
    """rerank over the whole catalog: the score recommend's index must rank by."""
    rows = conn.execute(
        "select item_id, score from rerankdb.rerank(%s, (select array_agg(item_id) from rerankdb.items),"
        " %s, exclude_seen => %s)",
        [user, k, exclude_seen],
    ).fetchall()
    return [(r[0], r[1]) for r in rows]


def recommend(conn: Any, user: int, k: int = 10, exclude_seen: bool = True) -> list[tuple[int, float]]:
    rows = conn.execute("select item_id, score from rerankdb.recommend(%s, %s, %s)", [user, k, exclude_seen])
    return [(r[0], r[1]) for r in rows]


def index_scans(conn: Any, index: str) -> int:
    """How often the index was searched (this backend's counts flushed first)."""
    conn.execute("select pg_stat_force_next_flush()")
    conn.execute("select pg_stat_clear_snapshot()")
    row = conn.execute(
        "select idx_scan from pg_stat_user_indexes where schemaname = 'rerankdb' and indexrelname = %s",
        [index],
    ).fetchone()
    return 0 if row is None else int(row[0])


def assert_matches_rerank(conn: Any, user: int, k: int = 10, found: int = 9) -> None:
    """Rerank's scores, highest first; at least ``found`` of rerank's own top k (the two-index
    search that the hybrid index replaces finds fewer)."""
    got, want = recommend(conn, user, k), exact(conn, user, k)
    assert [s for _, s in got] == sorted((s for _, s in got), reverse=True)
    assert len(got) == k
    want_scores = dict(exact(conn, user, N))
    for item, score in got:
        assert score == pytest.approx(want_scores[item], abs=1e-5), item
    assert len({i for i, _ in got} & {i for i, _ in want}) >= found, (got, want)


def test_an_items_key_times_a_users_key_is_reranks_score(conn: Any, world: list[int]) -> None:
    """The algebra, for every item (with or without a collaborative or sequence vector)."""
    for user in (1, 2):
        got = dict(
            conn.execute(
                "select hk.item_id, -(hk.key <#> rerankdb.hybrid_key("
                "   rerankdb.blend(u.embedding, u.short_embedding, st.short_weight, st.text_center,"
                "                  st.text_centering),"
                "   1, rerankdb.blend(u.collab, u.short_collab, st.collab_short_weight, st.collab_center,"
                "                     st.collab_centering), 1, m.collab_dim, u.seq, 1, m.seq_dim)::halfvec)"
                " from rerankdb.hybrid_keys hk, rerankdb.user_vectors u, rerankdb.settings st,"
                "      rerankdb.hybrid_meta m where u.user_id = %s",
                [user],
            ).fetchall()
        )
        want = dict(exact(conn, user, N, exclude_seen=False))
        assert got.keys() == want.keys()
        # halfvec keys: about three significant digits per component.
        assert max(abs(got[i] - want[i]) for i in want) < 5e-3


def test_recommend_searches_the_one_index_and_scores_as_rerank(conn: Any, world: list[int]) -> None:
    before = index_scans(conn, "hybrid_keys_hnsw")
    text_before = index_scans(conn, "item_vectors_embedding_hnsw")
    for user in range(1, 6):
        assert_matches_rerank(conn, user)
    assert index_scans(conn, "hybrid_keys_hnsw") >= before + 5
    assert index_scans(conn, "item_vectors_embedding_hnsw") == text_before, "the text index is not searched"


def test_recommend_excludes_seen_through_the_index(conn: Any, client: Client, world: list[int]) -> None:
    seen = [i for i, _ in exact(conn, 1, 100)]
    conn.execute(
        "insert into rerankdb.interactions (user_id, item_id) select 1, unnest(%s::bigint[])", [seen]
    )
    got = recommend(conn, 1, 10)
    assert len(got) == 10 and not {i for i, _ in got} & set(seen)
    assert len({i for i, _ in got} & {i for i, _ in exact(conn, 1, 10)}) >= 9


def test_an_item_embedded_after_the_build_is_found_at_once(
    conn: Any, client: Client, world: list[int]
) -> None:
    """Listed as fresh, scored exactly beside the index search; the next build takes it in."""
    user_text = conn.execute("select embedding from rerankdb.user_vectors where user_id = 3").fetchone()[0]
    load_items(client, np.asarray(user_text.to_numpy())[None, :], ids=[10_001])
    assert conn.execute("select item_id from rerankdb.hybrid_keys_fresh").fetchall() == [(10_001,)]
    got = recommend(conn, 3, 10)
    assert got[0][0] == 10_001
    assert_matches_rerank(conn, 3)
    assert conn.execute("select rerankdb.refresh_hybrid_keys()").fetchone() == (N + 1,)
    assert conn.execute("select count(*) from rerankdb.hybrid_keys_fresh").fetchone() == (0,)
    assert recommend(conn, 3, 1)[0][0] == 10_001


def test_fresh_items_are_filtered_like_the_others(conn: Any, client: Client, world: list[int]) -> None:
    """A fresh item the user has seen, or the item similar_items starts from, is scored beside
    the search but never returned; k past the index's pool still comes back whole."""
    user_text = conn.execute("select embedding from rerankdb.user_vectors where user_id = 3").fetchone()[0]
    load_items(client, np.repeat(np.asarray(user_text.to_numpy())[None, :], 2, axis=0), ids=[10_001, 10_002])
    conn.execute("insert into rerankdb.interactions (user_id, item_id) values (3, 10_001)")
    got = recommend(conn, 3, 10)
    assert got[0][0] == 10_002 and 10_001 not in {i for i, _ in got}
    assert recommend(conn, 3, 1, exclude_seen=False)[0][0] in {10_001, 10_002}
    similar = conn.execute("select item_id from rerankdb.similar_items(10_001, 5)").fetchall()
    assert similar[0] == (10_002,) and (10_001,) not in similar
    seen = conn.execute(
        "select count(distinct item_id) from rerankdb.interactions where user_id = 3"
    ).fetchone()
    assert len(recommend(conn, 3, N + 5)) == N + 2 - seen[0]
    assert len(recommend(conn, 3, 2**31 - 1)) == N + 2 - seen[0]  # the largest k the client takes
    assert_matches_rerank(conn, 3, k=50, found=45)


def test_many_fresh_items_are_searched_by_text_too(
    conn: Any, client: Client, world: list[int], rng: np.random.Generator
) -> None:
    """Past 256 fresh items they are not all scored: the text index finds them."""
    user_text = np.asarray(
        conn.execute("select embedding from rerankdb.user_vectors where user_id = 2").fetchone()[0].to_numpy()
    )
    load_items(client, rng.standard_normal((300, DIM)), ids=range(20_001, 20_301))
    load_items(client, user_text[None, :], ids=[30_000])
    assert conn.execute("select count(*) from rerankdb.hybrid_keys_fresh").fetchone() == (301,)
    assert recommend(conn, 2, 1)[0][0] == 30_000
    assert_matches_rerank(conn, 2)


def test_a_deleted_item_is_not_returned(conn: Any, world: list[int]) -> None:
    first = recommend(conn, 4, 1)[0][0]
    conn.execute("delete from rerankdb.items where item_id = %s", [first])
    assert first not in {i for i, _ in recommend(conn, 4, 10)}
    assert_matches_rerank(conn, 4)


def test_settings_changed_by_hand_fall_back_until_the_next_build(conn: Any, world: list[int]) -> None:
    conn.execute("update rerankdb.settings set collab_weight = 0.4, sequence_weight = 0.5")
    before = index_scans(conn, "hybrid_keys_hnsw")
    for user in (1, 2):
        assert_matches_rerank(conn, user, found=5)
    assert index_scans(conn, "hybrid_keys_hnsw") == before, "keys built with other weights are not used"
    conn.execute("select rerankdb.refresh_hybrid_keys()")
    assert conn.execute("select collab_weight, sequence_weight from rerankdb.hybrid_meta").fetchone() == (
        pytest.approx(0.4),
        0.5,
    )
    for user in (1, 2):
        assert_matches_rerank(conn, user)
    assert index_scans(conn, "hybrid_keys_hnsw") >= before + 2


def test_a_new_training_falls_back_until_the_next_build(conn: Any, world: list[int]) -> None:
    conn.execute("update rerankdb.settings set trained_at = now() + interval '1 second'")
    before = index_scans(conn, "hybrid_keys_hnsw")
    assert_matches_rerank(conn, 1, found=5)
    assert index_scans(conn, "hybrid_keys_hnsw") == before


def test_a_user_without_a_sequence_vector_falls_back(conn: Any, world: list[int]) -> None:
    """The keys carry the sequence part with its weight: a query without one is another score."""
    conn.execute("update rerankdb.user_vectors set seq = null where user_id = 5")
    before = index_scans(conn, "hybrid_keys_hnsw")
    assert_matches_rerank(conn, 5, found=5)
    assert index_scans(conn, "hybrid_keys_hnsw") == before


def test_similar_items_is_the_score_of_a_user_with_the_items_vectors(conn: Any, world: list[int]) -> None:
    source = 200  # has text, collaborative and sequence vectors
    conn.execute(
        "insert into rerankdb.user_vectors (user_id, embedding, collab, seq)"
        " select 99, embedding, collab, seq from rerankdb.item_rank where item_id = %s",
        [source],
    )
    want = [(i, s) for i, s in exact(conn, 99, 11, exclude_seen=False) if i != source][:10]
    got = [
        (r[0], r[1])
        for r in conn.execute("select item_id, score from rerankdb.similar_items(%s, 10)", [source])
    ]
    assert source not in {i for i, _ in got}
    assert len({i for i, _ in got} & {i for i, _ in want}) >= 9
    scores = dict(exact(conn, 99, N, exclude_seen=False))
    for item, score in got:
        assert score == pytest.approx(scores[item], abs=1e-5)


def test_an_embedding_written_during_a_build_stays_fresh(
    conn: Any, db_url: str, client: Client, world: list[int]
) -> None:
    """A writer that commits after the build's snapshot: its item is not in the keys, so it
    must stay listed as fresh (the build clears only what its snapshot saw)."""
    with db.connect(db_url) as writer:
        writer.execute("insert into rerankdb.items (item_id, content) values (40_000, 'late')")
        writer.execute(
            "select rerankdb.set_item_vectors(array[40000]::bigint[], array[%s]::vector[])",
            [vec(np.ones(DIM))],
        )
        # Uncommitted while the build runs (autocommit off).
        assert conn.execute("select rerankdb.refresh_hybrid_keys()").fetchone() == (N,)
        writer.commit()
    assert conn.execute("select item_id from rerankdb.hybrid_keys_fresh").fetchall() == [(40_000,)]
    assert conn.execute("select count(*) from rerankdb.hybrid_keys where item_id = 40000").fetchone() == (0,)


def test_past_4000_dimensions_nothing_is_built_and_recommend_still_works(conn: Any, world: list[int]) -> None:
    big = 3700  # 384 + 3700 + 8 > 4,000, pgvector's limit for an HNSW index on halfvec
    rng = np.random.default_rng(5)
    conn.execute(
        "update rerankdb.item_rank r set collab = c.v from unnest(%s::bigint[], %s::vector[]) as c(id, v)"
        " where r.item_id = c.id",
        [world[:500], [vec(unit(rng.standard_normal(big))) for _ in range(500)]],
    )
    conn.execute("update rerankdb.user_vectors set collab = %s", [vec(unit(rng.standard_normal(big)))])
    conn.execute("update rerankdb.settings set trained_at = now() + interval '1 second'")
    notices: list[str] = []
    conn.add_notice_handler(lambda d: notices.append(d.message_primary or ""))
    assert conn.execute("select rerankdb.refresh_hybrid_keys()").fetchone() == (0,)
    assert any("4092 dimensions" in n and "exceed" in n for n in notices), notices
    assert conn.execute("select count(*) from rerankdb.hybrid_meta").fetchone() == (0,)
    assert_matches_rerank(conn, 1, found=5)


def test_without_training_nothing_is_built(conn: Any, client: Client, rng: np.random.Generator) -> None:
    """Text alone: the text index already is that index."""
    load_items(client, rng.standard_normal((50, DIM)))
    assert conn.execute("select rerankdb.refresh_hybrid_keys()").fetchone() == (0,)
    assert conn.execute("select count(*) from rerankdb.hybrid_meta").fetchone() == (0,)
    load_items(client, rng.standard_normal((5, DIM)), ids=range(51, 56))
    assert conn.execute("select count(*) from rerankdb.hybrid_keys_fresh").fetchone() == (0,), (
        "nothing is listed while no index is built"
    )


def test_only_the_owner_and_the_worker_build_it(conn: Any, login: Any) -> None:
    """The worker role builds the index (train, tune); the app and reader roles may neither
    build it, nor swap a table, nor read the keys (they would give the embeddings away)."""
    with db.connect(login("rerankdb_worker"), autocommit=True) as worker:
        assert worker.execute("select rerankdb.refresh_hybrid_keys()").fetchone() == (0,)
    for role in ("rerankdb_app", "rerankdb_reader"):
        with db.connect(login(role), autocommit=True) as other:
            for sql in (
                "select rerankdb.refresh_hybrid_keys()",
                "select rerankdb.swap_in_next('collab_keys', 'refresh_collab_keys')",
                "select count(*) from rerankdb.hybrid_keys",
            ):
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    other.execute(sql)
