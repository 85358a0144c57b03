"""The short-term vector: folded beside the long-term one, blended in at query time, and a
change of half-life that every user follows."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import numpy as np
import psycopg
import pytest

from rerankdb import Client, user_refresh
from rerankdb.drain import drain
from rerankdb.train import train
from tests.helpers import load_items
from tests.worker_helpers import T0, add_interactions

DIM = 384


def vectors(conn: Any, column: str) -> dict[int, np.ndarray]:
    rows = conn.execute(f"select user_id, {column} from rerankdb.user_vectors where {column} is not null")
    return {u: np.asarray(v.to_numpy(), dtype=np.float64) for u, v in rows.fetchall()}


def unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def blend(long: np.ndarray, short: np.ndarray, share: float) -> np.ndarray:
    return unit((1 - share) * long + share * short)


@pytest.fixture
def items(client: Client, rng: np.random.Generator) -> dict[int, np.ndarray]:
    vecs = rng.standard_normal((12, DIM))
    load_items(client, vecs)
    return {i + 1: unit(v) for i, v in enumerate(vecs)}


def test_short_term_sum_weighs_the_newest_interactions(conn: Any, items: dict[int, np.ndarray]) -> None:
    conn.execute("update rerankdb.settings set half_life = '30 days', short_half_life = '1 minute'")
    drain(conn, None, 0.0, DIM)  # the half-lives changed: nobody to rebuild yet
    add_interactions(
        conn,
        [
            (1, 1, "view", None, None, T0),
            (1, 2, "purchase", None, None, T0 + timedelta(days=2)),  # weight 3
            (1, 3, "view", None, None, T0 + timedelta(days=2, minutes=1)),  # the newest
        ],
    )
    drain(conn, None, 0.0, DIM)
    day = 86400.0
    long_want = (
        2 ** (-(2 * day + 60) / (30 * day)) * items[1] + 3 * 2 ** (-60 / (30 * day)) * items[2] + items[3]
    )
    short_want = 3 * 0.5 * items[2] + items[3]  # the view two days before: 2^-2881, nothing
    np.testing.assert_allclose(vectors(conn, "embedding")[1], unit(long_want), atol=1e-6)
    np.testing.assert_allclose(vectors(conn, "short_embedding")[1], unit(short_want), atol=1e-6)


def test_rerank_scores_with_the_blend_of_both(conn: Any, items: dict[int, np.ndarray]) -> None:
    add_interactions(
        conn,
        [(2, i, "view", None, None, T0 + timedelta(hours=i)) for i in (1, 2, 3, 4)]
        + [(2, 5, "view", None, None, T0 + timedelta(hours=4, minutes=5))],
    )
    drain(conn, None, 0.0, DIM)
    long, short = vectors(conn, "embedding")[2], vectors(conn, "short_embedding")[2]
    assert np.abs(long - short).max() > 0.1, "the two vectors differ"
    cands = list(range(1, 13))
    for share in (0.0, 0.3, 1.0):
        conn.execute("update rerankdb.settings set short_weight = %s, text_centering = 0", [share])
        rows = conn.execute("select item_id, score from rerankdb.rerank(2, %s)", [cands]).fetchall()
        q = blend(long, short, share)
        want = sorted(cands, key=lambda i: -float(q @ items[i]))
        assert [r[0] for r in rows] == want, share
        for item, score in rows:
            assert score == pytest.approx(float(q @ items[item]), abs=1e-5), (share, item)


def test_blend_function_contract(conn: Any) -> None:
    def call(long: str | None, short: str | None, share: float | None) -> list[float] | None:
        row = conn.execute(
            "select rerankdb.blend(%s::vector, %s::vector, %s, null, 0)::real[]", [long, short, share]
        ).fetchone()
        return None if row[0] is None else [round(float(x), 6) for x in row[0]]

    assert call("[1,0]", "[0,1]", 0.5) == [0.707107, 0.707107]
    assert call("[1,0]", "[0,1]", 0) == [1.0, 0.0]
    assert call("[1,0]", "[0,1]", 1) == [0.0, 1.0]
    assert call("[1,0]", None, 0.7) == [1.0, 0.0], "no short-term vector: the long-term one"
    assert call("[1,0]", "[0,1,0]", 0.7) == [1.0, 0.0], "another dimension (mid-training): the long one"
    assert call("[1,0]", "[-1,0]", 0.5) == [1.0, 0.0], "a blend with no direction: the long one"
    assert call(None, "[0,1]", 0.5) is None


def test_collab_space_blends_its_short_term_vector(
    conn: Any, client: Client, rng: np.random.Generator
) -> None:
    load_items(client, rng.standard_normal((30, DIM)))
    rows = [
        (u, int(i), "like", None, None, T0 + timedelta(hours=k))
        for u in range(1, 21)
        for k, i in enumerate(rng.choice(30, 8, replace=False) + 1)
    ]
    add_interactions(conn, rows)
    drain(conn, None, 0.0, DIM)
    train(conn, None, 0.0, DIM, k=4)
    conn.execute("update rerankdb.settings set collab_weight = 1, collab_centering = 0, text_centering = 0")
    long, short = vectors(conn, "collab")[3], vectors(conn, "short_collab")[3]
    item_c = dict(
        conn.execute("select item_id, collab from rerankdb.item_rank where collab is not null").fetchall()
    )
    item_c = {i: np.asarray(v.to_numpy(), dtype=np.float64) for i, v in item_c.items()}
    cands = sorted(item_c)
    for share in (0.0, 0.6):
        conn.execute("update rerankdb.settings set collab_short_weight = %s", [share])
        got = dict(conn.execute("select item_id, score from rerankdb.rerank(3, %s)", [cands]).fetchall())
        q = blend(long, short, share)
        for i in cands:
            assert got[i] == pytest.approx(float(q @ item_c[i]), abs=1e-5), (share, i)


def test_incremental_equals_rebuild_for_both_sums_out_of_order(
    conn: Any, items: dict[int, np.ndarray], rng: np.random.Generator
) -> None:
    conn.execute("update rerankdb.settings set short_half_life = '30 seconds'")
    for _ in range(4):
        rows = [
            (
                int(u),
                int(i),
                "view",
                float(rng.uniform(0.1, 3)),
                None,
                T0 + timedelta(seconds=float(rng.uniform(0, 600))),
            )
            for u, i in zip(rng.integers(1, 6, 25), rng.integers(1, 13, 25), strict=True)
        ]
        add_interactions(conn, rows)  # each batch reaches back in time: out of order
        drain(conn, None, 0.0, DIM)
    before = {c: vectors(conn, c) for c in ("embedding", "short_embedding")}
    user_refresh.rebuild_users(conn, None, 0.0, DIM, user_refresh.all_users(conn))
    for column, was in before.items():
        now = vectors(conn, column)
        assert now.keys() == was.keys()
        for u in was:
            assert np.abs(now[u] - was[u]).max() <= 1e-5, (column, u)


def test_a_half_life_change_says_so_and_the_next_drain_rebuilds_everyone(
    conn: Any, items: dict[int, np.ndarray]
) -> None:
    add_interactions(
        conn, [(4, 1, "view", None, None, T0), (4, 2, "view", None, None, T0 + timedelta(minutes=3))]
    )
    drain(conn, None, 0.0, DIM)
    old_short = vectors(conn, "short_embedding")[4]
    notices: list[str] = []
    conn.add_notice_handler(lambda d: notices.append(d.message_primary or ""))
    conn.execute("update rerankdb.settings set short_half_life = '1 hour'")
    assert notices and "half-life changed" in notices[0] and "rebuilt" in notices[0]
    conn.execute("update rerankdb.settings set short_weight = 0.9")  # a blend weight: no notice
    assert len(notices) == 1
    report = drain(conn, None, 0.0, DIM)
    assert report.half_lives_changed
    want = unit(2 ** (-3 / 60) * items[1] + items[2])
    np.testing.assert_allclose(vectors(conn, "short_embedding")[4], want, atol=1e-6)
    assert np.abs(old_short - want).max() > 1e-3
    row = conn.execute("select states_short_half_life from rerankdb.worker_state").fetchone()
    assert row[0] == timedelta(hours=1)
    assert not drain(conn, None, 0.0, DIM).half_lives_changed, "once"


def test_bad_half_lives_and_weights_are_refused(conn: Any) -> None:
    for assignment in (
        "half_life = '-1 day'",
        "half_life = '0'",
        "short_half_life = null",
        "short_half_life = '0 seconds'",
        "short_weight = 1.5",
        "collab_short_weight = -0.1",
    ):
        with (
            pytest.raises(
                psycopg.errors.CheckViolation if "null" not in assignment else psycopg.errors.NotNullViolation
            ),
            conn.transaction(),
        ):
            conn.execute(f"update rerankdb.settings set {assignment}")


def test_vectors_set_by_the_app_drop_the_stale_short_term_one(
    conn: Any, client: Client, items: dict[int, np.ndarray], rng: np.random.Generator
) -> None:
    add_interactions(conn, [(5, 1, "view", None, None, T0)])
    drain(conn, None, 0.0, DIM)
    assert 5 in vectors(conn, "short_embedding")
    mine = unit(rng.standard_normal(DIM))
    client.set_user_vectors([5], mine[None, :])
    assert 5 not in vectors(conn, "short_embedding")
    conn.execute("update rerankdb.settings set short_weight = 0.9, text_centering = 0")
    got = dict(conn.execute("select item_id, score from rerankdb.rerank(5, array[1, 2, 3])").fetchall())
    for i in (1, 2, 3):
        assert got[i] == pytest.approx(float(mine @ items[i]), abs=1e-5)


def test_recommend_searches_with_the_blend(conn: Any, items: dict[int, np.ndarray]) -> None:
    add_interactions(
        conn, [(6, 1, "view", None, None, T0), (6, 2, "view", None, None, T0 + timedelta(days=1))]
    )
    drain(conn, None, 0.0, DIM)
    conn.execute("update rerankdb.settings set short_weight = 1, text_centering = 0")
    top = conn.execute("select item_id, score from rerankdb.recommend(6, 3, false)").fetchall()
    assert top[0][0] == 2, "the newest interest alone"
    assert top[0][1] == pytest.approx(1.0, abs=1e-5)
