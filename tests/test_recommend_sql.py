"""Contracts of rerankdb.recommend and rerankdb.similar_items."""

from __future__ import annotations

from typing import Any

import numpy as np
import psycopg
import pytest

from rerankdb import Client, Interaction
from tests.helpers import load_items, unit

DIM = 384


def recommend(conn: Any, user: int, k: Any = 10, exclude_seen: bool = True) -> list[tuple[int, float]]:
    rows = conn.execute("select * from rerankdb.recommend(%s, %s, %s)", [user, k, exclude_seen]).fetchall()
    assert [r[2] for r in rows] == list(range(1, len(rows) + 1))
    return [(r[0], r[1]) for r in rows]


@pytest.fixture
def catalog(client: Client, rng: np.random.Generator) -> np.ndarray:
    vecs = rng.standard_normal((2000, DIM)).astype(np.float32)
    load_items(client, vecs)
    return vecs


def brute_force(vecs: np.ndarray, query: np.ndarray, exclude: set[int]) -> list[int]:
    sims = unit(vecs) @ unit(query)
    order = [int(i) + 1 for i in np.argsort(-sims)]
    return [i for i in order if i not in exclude]


def test_recommend_excludes_seen_and_still_returns_k(
    conn: Any, client: Client, catalog: np.ndarray, rng: np.random.Generator
) -> None:
    user = rng.standard_normal(DIM).astype(np.float32)
    client.set_user_vectors([1], user[None, :])
    nearest = brute_force(catalog, user, set())
    # The user has seen their 300 nearest items: far more than ef_search (40)
    # would return without pgvector's iterative scan.
    seen = nearest[:300]
    client.record_interactions(Interaction(1, i, "view") for i in seen)
    got = recommend(conn, 1, 10)
    assert len(got) == 10
    assert not {i for i, _ in got} & set(seen)
    want = brute_force(catalog, user, set(seen))[:10]
    assert len({i for i, _ in got} & set(want)) >= 9, "HNSW recall on 2,000 items"
    scores = [s for _, s in got]
    assert scores == sorted(scores, reverse=True)


def test_recommend_include_seen(conn: Any, client: Client, catalog: np.ndarray) -> None:
    client.set_user_vectors([1], catalog[41][None, :])
    client.record_interactions([Interaction(1, 42, "like")])
    got = recommend(conn, 1, 3, exclude_seen=False)
    assert got[0][0] == 42 and got[0][1] == pytest.approx(1.0, abs=1e-6)
    assert 42 not in {i for i, _ in recommend(conn, 1, 3)}


def test_recommend_cold_user_and_k(conn: Any, client: Client, catalog: np.ndarray) -> None:
    assert recommend(conn, 999) == []
    client.set_user_vectors([1], catalog[0][None, :])
    assert recommend(conn, 1, 0) == []
    assert len(recommend(conn, 1, 50)) == 50
    # The largest k the client takes: every item (the catalog), not an overflow.
    everything = conn.execute("select count(*) from rerankdb.item_vectors").fetchone()[0]
    assert len(recommend(conn, 1, 2**31 - 1)) == everything
    similar = conn.execute("select count(*) from rerankdb.similar_items(7, %s)", [2**31 - 1]).fetchone()
    assert similar == (everything - 1,)
    for bad in (-1, None):
        with pytest.raises(psycopg.errors.InvalidParameterValue, match="k must be >= 0, got"):
            recommend(conn, 1, bad)


def test_similar_items(conn: Any, catalog: np.ndarray) -> None:
    rows = conn.execute("select * from rerankdb.similar_items(7, 5)").fetchall()
    ids = [r[0] for r in rows]
    assert 7 not in ids and len(ids) == 5
    assert len(set(ids) & set(brute_force(catalog, catalog[6], {7})[:5])) >= 4
    assert conn.execute("select * from rerankdb.similar_items(123456)").fetchall() == []
    with pytest.raises(psycopg.errors.InvalidParameterValue):
        conn.execute("select * from rerankdb.similar_items(7, -2)")
