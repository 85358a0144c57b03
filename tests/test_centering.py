"""Centered scoring: rerank ranks by how a user differs from the average user."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np
import psycopg
import pytest
from psycopg import sql

from rerankdb import Client
from rerankdb.drain import drain
from rerankdb.user_refresh import rebuild_all
from tests.helpers import load_items, unit

DIM = 384
USERS = 60


@pytest.fixture
def world(client: Client, conn: Any, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """20 items; 60 users who share a strong common direction plus their own taste."""
    items = rng.standard_normal((20, DIM))
    load_items(client, items)
    common = rng.standard_normal(DIM) * 3
    users = common + rng.standard_normal((USERS, DIM))
    client.set_user_vectors(range(1, USERS + 1), users)
    return {"items": unit(items), "users": unit(users)}


def center(conn: Any, column: str) -> np.ndarray | None:
    row = conn.execute(sql.SQL("select {} from rerankdb.settings").format(sql.Identifier(column))).fetchone()
    return None if row[0] is None else np.asarray(row[0].to_numpy(), dtype=np.float64)


def scores(conn: Any, user: int, cands: list[int]) -> dict[int, float]:
    rows = conn.execute("select item_id, score from rerankdb.rerank(%s, %s::bigint[])", [user, cands])
    return dict(rows.fetchall())


def order(conn: Any, user: int, cands: list[int]) -> list[int]:
    rows = conn.execute("select item_id from rerankdb.rerank(%s, %s::bigint[])", [user, cands])
    return [r[0] for r in rows]


def test_refresh_centers_averages_the_user_vectors(conn: Any, world: dict[str, np.ndarray]) -> None:
    assert center(conn, "text_center") is None, "no center until the first refresh"
    assert conn.execute("select rerankdb.refresh_centers()").fetchone() == (USERS,)
    got = center(conn, "text_center")
    assert got is not None and np.abs(got - world["users"].mean(axis=0)).max() <= 1e-5
    assert center(conn, "collab_center") is None, "no collaborative vectors, no collaborative center"


@pytest.mark.parametrize("share", [0.0, 0.5, 1.0])
def test_scores_are_cosines_with_the_centered_user(
    conn: Any, world: dict[str, np.ndarray], share: float
) -> None:
    conn.execute("select rerankdb.refresh_centers()")
    conn.execute("update rerankdb.settings set text_centering = %s", [share])
    c = world["users"].mean(axis=0)
    cands = list(range(1, 21))
    for user in (1, 17, 60):
        want = unit(world["users"][user - 1] - share * c) @ world["items"].T
        got = scores(conn, user, cands)
        assert [got[i] for i in cands] == pytest.approx(want.tolist(), abs=1e-5)
        assert order(conn, user, cands) == [cands[j] for j in np.argsort(-want, kind="stable")]


def test_centering_changes_the_order_toward_the_users_own_taste(
    conn: Any, client: Client, world: dict[str, np.ndarray]
) -> None:
    """An item along the common direction beats one along the user's own taste, until centered."""
    c = world["users"].mean(axis=0)
    own = world["users"][0] - c
    load_items(client, np.vstack([c, own + 0.2 * c]), ids=[100, 101])
    assert order(conn, 1, [100, 101]) == [100, 101]
    conn.execute("select rerankdb.refresh_centers()")
    assert order(conn, 1, [100, 101]) == [101, 100]


def test_too_few_users_means_no_centering(conn: Any, world: dict[str, np.ndarray]) -> None:
    before = scores(conn, 5, [1, 2, 3])
    assert conn.execute("select rerankdb.refresh_centers(61)").fetchone() == (0,)
    assert center(conn, "text_center") is None
    assert scores(conn, 5, [1, 2, 3]) == pytest.approx(before, abs=1e-6)
    want = world["users"][4] @ world["items"][:3].T
    assert [before[i] for i in (1, 2, 3)] == pytest.approx(want.tolist(), abs=1e-5)


def test_a_user_equal_to_the_center_keeps_the_plain_cosine(
    conn: Any, client: Client, world: dict[str, np.ndarray]
) -> None:
    same = np.tile(world["users"][0], (USERS, 1))
    client.set_user_vectors(range(1, USERS + 1), same)
    conn.execute("select rerankdb.refresh_centers()")
    got = scores(conn, 1, [1, 2, 3])
    assert [got[i] for i in (1, 2, 3)] == pytest.approx((world["items"][:3] @ same[0]).tolist(), abs=1e-5)


@pytest.mark.parametrize("column", ["text_centering", "collab_centering"])
@pytest.mark.parametrize("value", [-0.1, 1.5, "NaN"])
def test_centering_settings_outside_0_1_are_rejected(conn: Any, column: str, value: Any) -> None:
    with pytest.raises(psycopg.errors.CheckViolation):
        conn.execute(sql.SQL("update rerankdb.settings set {} = %s").format(sql.Identifier(column)), [value])


@pytest.mark.parametrize("bad", [0, -3, None])
def test_refresh_centers_rejects_a_bad_minimum(conn: Any, world: dict[str, np.ndarray], bad: Any) -> None:
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="min_users must be >= 1"):
        conn.execute("select rerankdb.refresh_centers(%s)", [bad])
    assert center(conn, "text_center") is None, "nothing written"


def test_a_full_rebuild_refreshes_the_centers(conn: Any, client: Client, rng: np.random.Generator) -> None:
    load_items(client, rng.standard_normal((10, DIM)))
    t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
    rows = [(u, int(i), t0 + timedelta(hours=int(i))) for u in range(1, 56) for i in rng.choice(10, 3) + 1]
    with conn.cursor() as cur:
        cur.executemany(
            "insert into rerankdb.interactions (user_id, item_id, occurred_at) values (%s, %s, %s)", rows
        )
    params = 0.0
    drain(conn, None, params, DIM)
    assert center(conn, "text_center") is None, "folds alone leave the centers to the next rebuild"
    rebuild_all(conn, None, params, DIM)
    users = conn.execute("select embedding from rerankdb.user_vectors").fetchall()
    want = np.mean([np.asarray(u[0].to_numpy(), dtype=np.float64) for u in users], axis=0)
    got = center(conn, "text_center")
    assert len(users) == 55 and got is not None and np.abs(got - want).max() <= 1e-5


def center_fn(conn: Any, v: str | None, c: str | None, share: float | None) -> list[float] | None:
    row = conn.execute("select rerankdb.center(%s::vector, %s::vector, %s)::real[]", [v, c, share]).fetchone()
    return None if row[0] is None else [float(x) for x in row[0]]


def test_center_function(conn: Any) -> None:
    got = center_fn(conn, "[0.6,0.8]", "[0.5,0.5]", 1.0)
    assert got == pytest.approx(unit(np.array([0.1, 0.3])).tolist(), abs=1e-6)
    got = center_fn(conn, "[0.6,0.8]", "[0.5,0.5]", 0.5)
    assert got == pytest.approx(unit(np.array([0.35, 0.55])).tolist(), abs=1e-6)


@pytest.mark.parametrize(
    ("c", "share", "why"),
    [
        (None, 1.0, "no center yet"),
        ("[0.5,0.5]", 0.0, "share 0"),
        ("[0.5,0.5]", None, "share NULL"),
        ("[1,0,0]", 1.0, "another dimension"),
        ("[0.6,0.8]", 1.0, "the user is the average"),
    ],
)
def test_center_leaves_the_vector_alone(conn: Any, c: str | None, share: float | None, why: str) -> None:
    assert center_fn(conn, "[0.6,0.8]", c, share) == pytest.approx([0.6, 0.8], abs=1e-6), why


def test_center_of_null_is_null(conn: Any) -> None:
    assert center_fn(conn, None, "[0.5,0.5]", 1.0) is None


def test_recommend_ranks_by_the_centered_vector_like_rerank(conn: Any, world: dict[str, np.ndarray]) -> None:
    conn.execute("select rerankdb.refresh_centers()")
    c = world["users"].mean(axis=0)
    for user in (2, 30):
        want = unit(world["users"][user - 1] - c) @ world["items"].T
        rows = conn.execute("select item_id, score from rerankdb.recommend(%s, 5, false)", [user]).fetchall()
        assert [r[0] for r in rows] == [int(j) + 1 for j in np.argsort(-want)[:5]]
        assert [r[1] for r in rows] == pytest.approx(np.sort(want)[::-1][:5].tolist(), abs=1e-5)
        reranked = scores(conn, user, [r[0] for r in rows])
        assert [reranked[r[0]] for r in rows] == pytest.approx([r[1] for r in rows], abs=1e-6)
