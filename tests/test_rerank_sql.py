"""Contract of rerankdb.rerank, called in SQL as an application would."""

from __future__ import annotations

from typing import Any

import numpy as np
import psycopg
import pytest

from rerankdb import Client
from tests.helpers import assert_same_ranking, load_items, reference_rerank

DIM = 384


def rerank(conn: psycopg.Connection[Any], user: int, cands: Any, k: Any = None) -> list[tuple[int, Any]]:
    rows = conn.execute("select * from rerankdb.rerank(%s, %s::bigint[], %s)", [user, cands, k]).fetchall()
    assert [r[2] for r in rows] == list(range(1, len(rows) + 1)), "rank counts 1, 2, 3, ..."
    return [(r[0], r[1]) for r in rows]


@pytest.fixture
def world(client: Client, rng: np.random.Generator) -> dict[str, Any]:
    """1,200 items with random vectors (the last 200 in the catalog without one) and 5 users."""
    vecs = rng.standard_normal((1000, DIM)).astype(np.float32)
    ids = load_items(client, vecs)
    client.upsert_items({"item_id": i, "content": f"no vector {i}"} for i in range(1001, 1201))
    users = rng.standard_normal((5, DIM)).astype(np.float32)
    client.set_user_vectors([1, 2, 3, 4, 5], users)
    return {
        "items": dict(zip(ids, vecs, strict=True)),
        "users": dict(zip([1, 2, 3, 4, 5], users, strict=True)),
    }


@pytest.mark.parametrize("n", [10, 100, 1000])
def test_matches_numpy_reference(conn: Any, world: dict[str, Any], rng: np.random.Generator, n: int) -> None:
    for user in (1, 2, 3, 4, 5):
        cands = rng.choice(np.arange(1, 1201), n, replace=False).tolist()
        want = reference_rerank(world["users"][user], cands, world["items"])
        assert_same_ranking(rerank(conn, user, cands), want)


def test_users_with_vectors_out_of_line_rank_the_same(
    conn: Any, world: dict[str, Any], rng: np.random.Generator
) -> None:
    """A user row over the TOAST target keeps its text vector out of line (as a large
    dimension does: since revision 0006 rows up to 8 kB stay inline, so the test lowers
    the target back to 2 kB and pushes it out with a 128-d collaborative vector; no
    item has one, so ranking is by text)."""
    conn.execute("alter table rerankdb.user_vectors set (toast_tuple_target = 2048)")
    conn.execute("update rerankdb.user_vectors set collab = %s where user_id = 2", [rng.standard_normal(128)])
    stored = conn.execute(
        "select pg_column_size(embedding) from rerankdb.user_vectors where user_id = 2"
    ).fetchone()
    assert stored == (4 * DIM + 4,), "an out-of-line pointer: the vector without its 4-byte inline header"
    cands = rng.choice(np.arange(1, 1201), 300, replace=False).tolist()
    assert_same_ranking(rerank(conn, 2, cands), reference_rerank(world["users"][2], cands, world["items"]))


def test_scores_are_cosine_similarities(conn: Any, world: dict[str, Any]) -> None:
    got = dict(rerank(conn, 1, [1, 2, 3]))
    u = world["users"][1].astype(np.float64)
    for i in (1, 2, 3):
        v = world["items"][i].astype(np.float64)
        assert got[i] == pytest.approx(u @ v / np.linalg.norm(u) / np.linalg.norm(v), abs=1e-6)


def test_duplicates_and_nulls(conn: Any, world: dict[str, Any]) -> None:
    cands = [5, None, 7, 5, 1100, 7, None, 9, 1100]
    got = rerank(conn, 2, cands)
    assert_same_ranking(got, reference_rerank(world["users"][2], cands, world["items"]))
    assert [i for i, _ in got].count(5) == 1
    assert got[-1] == (1100, None)


def test_items_without_vectors_follow_in_input_order(conn: Any, world: dict[str, Any]) -> None:
    cands = [1150, 3, 99999, 1001, 4, 1150]  # 99999 is not even in the catalog
    got = rerank(conn, 3, cands)
    assert [i for i, s in got if s is None] == [1150, 99999, 1001]
    assert {i for i, s in got if s is not None} == {3, 4}


def test_cold_user_keeps_input_order(conn: Any, world: dict[str, Any]) -> None:
    cands = [9, 3, 1005, 3, None, 42]
    assert rerank(conn, 777, cands) == [(9, None), (3, None), (1005, None), (42, None)]
    assert rerank(conn, 777, cands, 2) == [(9, None), (3, None)]


@pytest.mark.parametrize("cands", [None, []])
def test_null_or_empty_candidates(conn: Any, world: dict[str, Any], cands: Any) -> None:
    assert rerank(conn, 1, cands) == []
    assert rerank(conn, 777, cands) == []


def test_all_null_candidates(conn: Any, world: dict[str, Any]) -> None:
    assert rerank(conn, 1, [None, None]) == []


def test_k(conn: Any, world: dict[str, Any]) -> None:
    cands = [*list(range(1, 51)), 1001]
    full = rerank(conn, 4, cands)
    assert rerank(conn, 4, cands, 5) == full[:5]
    assert rerank(conn, 4, cands, 0) == []
    assert rerank(conn, 4, cands, 1000) == full


def test_negative_k_is_an_error(conn: Any, world: dict[str, Any]) -> None:
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="k must be NULL or >= 0, got -1"):
        rerank(conn, 4, [1, 2], -1)


def test_ties_keep_input_order(conn: Any, client: Client) -> None:
    e = np.eye(DIM, dtype=np.float32)
    load_items(client, np.stack([e[0], e[0] * 3, e[1], e[0] * 0.5]), ids=[10, 11, 12, 13])
    client.set_user_vectors([1], e[0:1])
    assert [i for i, _ in rerank(conn, 1, [12, 13, 10, 11])] == [13, 10, 11, 12]
    assert [i for i, _ in rerank(conn, 1, [11, 10, 12, 13])] == [11, 10, 13, 12]


def test_hundred_thousand_candidates(conn: Any, world: dict[str, Any]) -> None:
    cands = list(range(100_000, 0, -1))
    got = rerank(conn, 5, cands)
    assert len(got) == 100_000
    assert_same_ranking(got[:1000], reference_rerank(world["users"][5], cands, world["items"])[:1000])
    assert [i for i, s in got[1000:]] == [i for i in cands if i > 1000]


def test_plain_sql_writes_are_normalized(conn: Any) -> None:
    """Apps may write vectors with plain SQL; they are stored unit length."""
    conn.execute("insert into rerankdb.items (item_id, content) values (1, 'a')")
    vec = "[" + ",".join(["3", "4"] + ["0"] * (DIM - 2)) + "]"
    conn.execute("insert into rerankdb.item_vectors (item_id, embedding) values (1, %s)", [vec])
    norm = conn.execute("select vector_norm(embedding) from rerankdb.item_vectors").fetchone()[0]
    assert norm == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize(
    ("value", "error", "message"),
    [
        ("[1,2,3]", psycopg.errors.DataException, "expected 384 dimensions, not 3"),
        ("[" + ",".join(["0"] * DIM) + "]", psycopg.errors.InvalidParameterValue, "zero vector"),
        ("[" + ",".join(["NaN"] + ["1"] * (DIM - 1)) + "]", psycopg.errors.DataException, "NaN"),
    ],
)
def test_bad_vectors_in_plain_sql_are_rejected(conn: Any, value: str, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        conn.execute("insert into rerankdb.user_vectors (user_id, embedding) values (1, %s)", [value])
    assert conn.execute("select count(*) from rerankdb.user_vectors").fetchone() == (0,)


def test_unknown_interaction_kind_is_rejected_in_sql(conn: Any) -> None:
    with pytest.raises(psycopg.errors.ForeignKeyViolation, match="interaction_kinds"):
        conn.execute("insert into rerankdb.interactions (user_id, item_id, kind) values (1, 2, 'teleport')")
    assert conn.execute("select count(*) from rerankdb.interactions").fetchone() == (0,)


def test_the_kinds_keep_the_rules_of_a_foreign_key(conn: Any) -> None:
    """Revision 0016: no foreign key on the kinds, triggers with its rules and its errors."""
    conn.execute("insert into rerankdb.interaction_kinds (kind, weight) values ('rate', 2), ('spare', 1)")
    log = "select user_id, kind from rerankdb.interactions order by user_id"
    conn.execute(
        "insert into rerankdb.interactions (user_id, item_id, kind) values (1, 1, 'rate'), (2, 1, 'like')"
    )
    # One unknown kind among known ones: the whole statement is refused, naming it.
    with pytest.raises(psycopg.errors.ForeignKeyViolation, match="interactions_kind_fkey") as caught:
        conn.execute(
            "insert into rerankdb.interactions (user_id, item_id, kind)"
            " values (3, 1, 'like'), (4, 1, 'teleport'), (5, 1, 'rate')"
        )
    assert (
        caught.value.diag.message_detail
        == 'Key (kind)=(teleport) is not present in table "interaction_kinds".'
    )
    with pytest.raises(psycopg.errors.ForeignKeyViolation, match="interactions_kind_fkey"):
        conn.execute("update rerankdb.interactions set kind = 'teleport' where user_id = 1")
    assert conn.execute(log).fetchall() == [(1, "rate"), (2, "like")]
    # A kind in use is not deleted, nor are the kinds truncated; an unused one is deleted.
    with pytest.raises(psycopg.errors.ForeignKeyViolation, match="interaction_kinds") as caught:
        conn.execute("delete from rerankdb.interaction_kinds where kind in ('spare', 'rate')")
    assert (
        caught.value.diag.message_detail == 'Key (kind)=(rate) is still referenced from table "interactions".'
    )
    with pytest.raises(psycopg.errors.ForeignKeyViolation):
        conn.execute("truncate rerankdb.interaction_kinds cascade")
    conn.execute("delete from rerankdb.interaction_kinds where kind = 'spare'")
    # A renamed kind is renamed in the log (and the rename is checked as any update).
    conn.execute("update rerankdb.interaction_kinds set kind = 'rating' where kind = 'rate'")
    assert conn.execute(log).fetchall() == [(1, "rating"), (2, "like")]
    conn.execute("update rerankdb.interactions set kind = 'view' where user_id = 1")
    conn.execute("delete from rerankdb.interaction_kinds where kind = 'rating'")
    assert "rating" not in {r[0] for r in conn.execute("select kind from rerankdb.interaction_kinds")}


def test_interaction_with_unknown_item_is_kept(conn: Any) -> None:
    conn.execute("insert into rerankdb.interactions (user_id, item_id, kind) values (1, 424242, 'like')")
    assert conn.execute("select user_id, item_id, kind from rerankdb.interactions").fetchall() == [
        (1, 424242, "like")
    ]


def test_deleting_an_item_deletes_its_vector(conn: Any, client: Client, rng: np.random.Generator) -> None:
    load_items(client, rng.standard_normal((3, DIM)))
    conn.execute("delete from rerankdb.items where item_id = 2")
    assert conn.execute("select item_id from rerankdb.item_vectors order by 1").fetchall() == [(1,), (3,)]
