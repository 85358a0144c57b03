"""Contract of rerankdb.rerank_scored: the caller's retriever scores blended with personalization."""

from __future__ import annotations

from typing import Any

import numpy as np
import psycopg
import pytest

from rerankdb import Client
from tests.helpers import load_items

DIM = 384


def scored(
    conn: Any, user: int, cands: Any, base: Any, weight: Any = 0.5, k: Any = None
) -> list[tuple[int, float]]:
    rows = conn.execute(
        "select * from rerankdb.rerank_scored(%s, %s::bigint[], %s::float8[], %s, %s)",
        [user, cands, base, weight, k],
    ).fetchall()
    assert [r[2] for r in rows] == list(range(1, len(rows) + 1))
    return [(r[0], r[1]) for r in rows]


@pytest.fixture
def setup(client: Client, rng: np.random.Generator) -> dict[str, Any]:
    e = np.eye(DIM)
    # item i's vector makes cosine with the user exactly cos[i]
    cos = {1: 1.0, 2: 0.0, 3: -1.0, 4: 0.6}
    vecs = [e[0] * c + e[1] * np.sqrt(max(1 - c * c, 0)) for c in cos.values()]
    load_items(client, np.array(vecs), ids=list(cos))
    client.upsert_items([{"item_id": 5, "content": "no vector"}])
    client.set_user_vectors([7], e[0:1])
    return {"cos": cos}


def test_blend_is_hand_computable(conn: Any, setup: Any) -> None:
    got = dict(scored(conn, 7, [1, 2, 3, 4], [10.0, 20.0, 30.0, 0.0], 0.5))
    # b = (base - 0) / 30 ; p = (cos + 1) / 2 ; score = 0.5 b + 0.5 p
    for item, base in zip([1, 2, 3, 4], [10.0, 20.0, 30.0, 0.0], strict=True):
        want = 0.5 * base / 30 + 0.5 * (setup["cos"][item] + 1) / 2
        assert got[item] == pytest.approx(want, abs=1e-6)


def test_weight_zero_is_the_retriever_order_and_one_is_rerank(conn: Any, setup: Any) -> None:
    cands, base = [1, 2, 3, 4], [1.0, 4.0, 3.0, 2.0]
    assert [i for i, _ in scored(conn, 7, cands, base, 0.0)] == [2, 3, 4, 1]
    rerank = [
        r[0] for r in conn.execute("select item_id from rerankdb.rerank(7, %s::bigint[])", [cands]).fetchall()
    ]
    assert [i for i, _ in scored(conn, 7, cands, base, 1.0)] == rerank


def test_cold_user_and_items_without_vectors_use_the_base_score(conn: Any, setup: Any) -> None:
    assert [i for i, _ in scored(conn, 999, [1, 2, 3], [3.0, 1.0, 2.0])] == [1, 3, 2]
    got = dict(scored(conn, 7, [5, 1], [8.0, 2.0], 0.5))
    assert got[5] == pytest.approx(1.0)  # no vector: its normalized base score alone


def test_duplicates_nulls_ties_and_k(conn: Any, setup: Any) -> None:
    got = scored(conn, 999, [2, None, 1, 2], [5.0, 9.0, 5.0, 100.0])
    assert got == [(2, 1.0), (1, 1.0)], "first occurrence wins; ties keep input order; all equal -> 1"
    assert scored(conn, 7, [1, 2, 3], [1.0, None, 2.0], 0.0)[-1][0] == 2, "NULL base counts as the lowest"
    assert len(scored(conn, 7, [1, 2, 3, 4], [1.0, 2.0, 3.0, 4.0], 0.5, 2)) == 2
    assert scored(conn, 7, [], []) == [] and scored(conn, 7, None, None) == []


@pytest.mark.parametrize(
    ("cands", "base", "weight", "k", "message"),
    [
        ([1, 2], [1.0], 0.5, None, r"one score per candidate \(2 candidates, 1 scores\)"),
        ([1, 2], None, 0.5, None, r"one score per candidate \(2 candidates, 0 scores\)"),
        ([1, 2], [1.0, float("nan")], 0.5, None, "must be finite"),
        ([1, 2], [1.0, float("inf")], 0.5, None, "must be finite"),
        ([1], [1.0], 1.5, None, r"weight must be in \[0, 1\], got 1.5"),
        ([1], [1.0], None, None, "weight must be in"),
        ([1], [1.0], 0.5, -1, "k must be NULL or >= 0"),
    ],
)
def test_bad_arguments(
    conn: Any, setup: Any, cands: Any, base: Any, weight: Any, k: Any, message: str
) -> None:
    with pytest.raises(psycopg.errors.InvalidParameterValue, match=message):
        scored(conn, 7, cands, base, weight, k)


def test_client_rerank_scored(client: Client, setup: Any) -> None:
    from rerankdb import InvalidInputError

    got = client.rerank_scored(7, [1, 2, 3, 4], [1.0, 4.0, 3.0, 2.0], weight=0.0)
    assert [r.item_id for r in got] == [2, 3, 4, 1]
    with pytest.raises(InvalidInputError, match="one score per candidate"):
        client.rerank_scored(7, [1, 2], [1.0])
    with pytest.raises(InvalidInputError, match="finite"):
        client.rerank_scored(7, [1], [float("nan")])
    with pytest.raises(InvalidInputError, match="weight must be in"):
        client.rerank_scored(7, [1], [1.0], weight=2)
