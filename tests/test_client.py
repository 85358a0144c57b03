"""The Python query layer: writes, reads, and every refusal writing nothing.

Every test here that takes ``client`` runs twice: on Client and on AsyncClient
(run to completion by tests.conftest.Blocking): they share one contract.
"""

from __future__ import annotations

import asyncio
import math
from datetime import datetime, timezone
from typing import Any

import numpy as np
import pytest
from psycopg import sql

from rerankdb import (
    AsyncClient,
    Client,
    DatabaseUnavailableError,
    DimensionMismatchError,
    Interaction,
    InvalidInputError,
    Item,
    Ranked,
    RerankdbError,
    SchemaNotInstalledError,
    UnknownKindError,
)
from tests.conftest import CLIENTS
from tests.helpers import load_items, reference_rerank

DIM = 384


@pytest.fixture
def client(any_client: Any) -> Any:
    """Both clients (tests.conftest.any_client)."""
    return any_client


def count(conn: Any, table: str) -> int:
    query = sql.SQL("select count(*) from {}").format(sql.Identifier("rerankdb", table))
    return int(conn.execute(query).fetchone()[0])


def test_upsert_items_inserts_updates_and_skips_unchanged(client: Client, conn: Any) -> None:
    assert client.upsert_items([Item(1, "one"), {"item_id": 2, "content": "two", "metadata": {"a": 1}}]) == 2
    assert client.upsert_items([Item(1, "one"), Item(2, "two", {"a": 1})]) == 0, "unchanged: no write"
    assert client.upsert_items([Item(1, "uno")]) == 1
    assert conn.execute("select item_id, content, metadata from rerankdb.items order by 1").fetchall() == [
        (1, "uno", {}),
        (2, "two", {"a": 1}),
    ]


@pytest.mark.parametrize(
    ("items", "message"),
    [
        ([Item(1, "a"), Item(1, "b")], "item_id 1 appears more than once"),
        ([Item("x", "a")], "item_id must be an integer"),  # type: ignore[arg-type]
        ([Item(2**63, "a")], "does not fit a bigint"),
        ([Item(1, None)], "content must be a string"),  # type: ignore[arg-type]
        ([Item(1, "a\x00b")], "NUL"),
        ([Item(1, "a", {"x": math.nan})], "metadata is not JSON"),
        ([Item(1, "a", {"x": object()})], "metadata is not JSON"),
        ([Item(1, "a", {"x": "nul\x00here"})], "metadata contains a NUL character"),
        ([Item(1, "a", {"k\x00": [1, {"y": "z"}]})], "metadata contains a NUL character"),
        ([Item(1, "a", {"x": [{"y": "\x00"}]})], "metadata contains a NUL character"),
    ],
)
def test_bad_items_write_nothing(client: Client, conn: Any, items: list[Item], message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        client.upsert_items([Item(99, "fine"), *items])
    assert count(conn, "items") == 0


def test_delete_items(client: Client, conn: Any, rng: np.random.Generator) -> None:
    load_items(client, rng.standard_normal((3, DIM)))
    assert client.delete_items([1, 3, 77]) == 2
    assert count(conn, "items") == 1 and count(conn, "item_vectors") == 1


def test_record_interactions(client: Client, conn: Any) -> None:
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    n = client.record_interactions(
        [
            Interaction(1, 10),
            Interaction(1, 11, "purchase", weight=2.5, context="red shoes", occurred_at=when),
            {"user_id": 2, "item_id": 999, "kind": "dislike"},  # item not in the catalog: kept
        ]
    )
    assert n == 3
    rows = conn.execute(
        "select user_id, item_id, kind, weight, context, occurred_at from rerankdb.interactions order by 1, 2"
    ).fetchall()
    assert [r[:5] for r in rows] == [
        (1, 10, "view", None, None),
        (1, 11, "purchase", 2.5, "red shoes"),
        (2, 999, "dislike", None, None),
    ]
    assert rows[1][5] == when
    assert rows[0][5] is not None


def test_unknown_kind_writes_nothing(client: Client, conn: Any) -> None:
    with pytest.raises(UnknownKindError, match=r"'teleport'.*expected one of add_to_cart, click"):
        client.record_interactions([Interaction(1, 1, "view"), Interaction(1, 2, "teleport")])
    assert count(conn, "interactions") == 0


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (Interaction(1, 2, weight=math.inf), "weight must be finite"),
        (Interaction(1, 2, weight=math.nan), "weight must be finite"),
        (Interaction(1, 2, weight="heavy"), "weight must be a number"),  # type: ignore[arg-type]
        (Interaction(None, 2), "user_id must be an integer"),  # type: ignore[arg-type]
        (Interaction(1, 2.5), "item_id must be an integer"),  # type: ignore[arg-type]
        (Interaction(1, 2, kind=3), "kind must be a string"),  # type: ignore[arg-type]
        (Interaction(1, 2, context=4), "context must be a string"),  # type: ignore[arg-type]
    ],
)
def test_bad_interactions_write_nothing(client: Client, conn: Any, bad: Interaction, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        client.record_interactions([Interaction(1, 1), bad])
    assert count(conn, "interactions") == 0


def test_set_vectors_and_rerank(client: Client, rng: np.random.Generator) -> None:
    vecs = rng.standard_normal((50, DIM))
    load_items(client, vecs.tolist())  # lists work as well as arrays
    user = rng.standard_normal(DIM)
    assert client.set_user_vectors([7], [user]) == 1
    cands = [5, 3, 9, 3, 60, 1]
    got = client.rerank(7, cands)
    assert all(isinstance(r, Ranked) for r in got)
    want = reference_rerank(user, cands, {i + 1: v for i, v in enumerate(vecs)})
    assert [r.item_id for r in got] == [i for i, _ in want]
    assert client.rerank(7, cands, k=2) == got[:2]
    assert client.rerank(7, [None, 5]) == client.rerank(7, [5])


def test_set_vectors_overwrites(client: Client, conn: Any) -> None:
    e = np.eye(DIM)
    client.set_user_vectors([1], e[0:1])
    client.set_user_vectors([1], e[1:2])
    assert count(conn, "user_vectors") == 1
    got = conn.execute("select embedding from rerankdb.user_vectors").fetchone()[0]
    assert np.allclose(got.to_numpy(), e[1])


def test_dimension_mismatch_names_both_and_writes_nothing(client: Client, conn: Any) -> None:
    client.upsert_items([Item(1, "a"), Item(2, "b")])
    with pytest.raises(DimensionMismatchError, match=r"dimension 768.*installed with dimension 384") as err:
        client.set_item_vectors([1, 2], np.ones((2, 768)))
    assert (err.value.expected, err.value.got) == (384, 768)
    assert count(conn, "item_vectors") == 0


@pytest.mark.parametrize(
    ("ids", "vectors", "message"),
    [
        ([1, 2], np.ones((3, DIM)), "got 2 ids but 3"),
        ([1, 1], np.ones((2, DIM)), "appears more than once"),
        ([1, 2], np.vstack([np.ones(DIM), np.full(DIM, np.nan)]), "row 1 has NaN or infinity"),
        ([1, 2], np.vstack([np.ones(DIM), np.full(DIM, np.inf)]), "row 1 has NaN or infinity"),
        ([1, 2], np.vstack([np.ones(DIM), np.zeros(DIM)]), "row 1 is a zero vector"),
        ([1, 2], np.full((2, DIM), 1e39), "beyond float32 range"),
        ([1, 2], [["a"] * DIM] * 2, "must be numeric"),
        ([1, 2], np.ones((2, DIM, 1)), "must be a 2-d array"),
    ],
)
def test_bad_vectors_write_nothing(
    client: Client, conn: Any, ids: list[int], vectors: Any, message: str
) -> None:
    with pytest.raises(InvalidInputError, match=message):
        client.set_user_vectors(ids, vectors)
    assert count(conn, "user_vectors") == 0


def test_item_vectors_need_their_items(client: Client, conn: Any) -> None:
    client.upsert_items([Item(1, "a")])
    with pytest.raises(InvalidInputError, match=r"unknown item_id.*: 2"):
        client.set_item_vectors([1, 2], np.ones((2, DIM)))
    assert count(conn, "item_vectors") == 0


def test_read_argument_errors(client: Client) -> None:
    with pytest.raises(InvalidInputError, match="k must be an integer from 0 to 2147483647"):
        client.rerank(1, [1], k=-1)
    with pytest.raises(InvalidInputError, match="k must be an integer from 0 to 2147483647"):
        client.recommend(1, k=None)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="candidate must be an integer"):
        client.rerank(1, ["7"])  # type: ignore[list-item]


def test_recommend_and_similar_through_client(client: Client, rng: np.random.Generator) -> None:
    vecs = rng.standard_normal((30, DIM))
    load_items(client, vecs)
    client.set_user_vectors([1], vecs[4:5])
    assert client.recommend(1, k=1, exclude_seen=False)[0].item_id == 5
    assert [r.rank for r in client.similar_items(5, k=3)] == [1, 2, 3]


def test_status(client: Client, rng: np.random.Generator) -> None:
    load_items(client, rng.standard_normal((4, DIM)))
    client.record_interactions([Interaction(1, 1)])
    st = client.status()
    assert (st.schema_revision, st.dimension, st.items, st.item_vectors, st.interactions) == (
        "0017",
        384,
        4,
        4,
        1,
    )
    # The worker's backlog, from the rerankdb.status view: the interaction waits for
    # folding; the items brought their vectors, so none waits for the encoder.
    backlog = (st.pending_interactions, st.deferred_interactions, st.pending_items, st.failed_items)
    assert backlog == (1, 0, 0, 0)
    assert st.interaction_lag is not None and st.item_lag is None
    assert st.last_user_refresh_at is None and st.model is None


@pytest.mark.parametrize("kind", sorted(CLIENTS))
def test_client_on_a_database_without_schema(empty_db_url: str, kind: str) -> None:
    with pytest.raises(SchemaNotInstalledError, match="rerankdb migrate"):
        CLIENTS[kind](empty_db_url)


@pytest.mark.parametrize("kind", sorted(CLIENTS))
def test_client_on_an_unreachable_server_says_so(tmp_path: Any, db_url: str, kind: str) -> None:
    url = f"postgresql://nobody@/postgres?host={tmp_path}&port=1"  # no server on this socket
    with pytest.raises(DatabaseUnavailableError, match="cannot connect to the database: "):
        CLIENTS[kind](url)
    with pytest.raises(DatabaseUnavailableError, match="cannot connect to the read server"):
        CLIENTS[kind](db_url, read_url=url)


@pytest.mark.parametrize("bad", [None, 1, "yes", 0.0])
def test_flags_are_true_or_false(client: Client, bad: Any) -> None:
    for call in (
        lambda: client.rerank(1, [1], exclude_seen=bad),
        lambda: client.rerank_scored(1, [1], [1.0], exclude_seen=bad),
        lambda: client.recommend(1, exclude_seen=bad),
    ):
        with pytest.raises(InvalidInputError, match=f"exclude_seen must be True or False, got {bad!r}"):
            call()
    assert client.rerank(1, [1], exclude_seen=np.bool_(True)) == [Ranked(1, None, 1)]  # numpy bool


def test_an_async_client_must_be_opened(db_url: str) -> None:
    async def use() -> None:
        rr = AsyncClient(db_url)
        with pytest.raises(RerankdbError, match="not open: use `async with`"):
            await rr.rerank(1, [1])
        async with rr:
            assert rr.dimension == DIM
            # Tasks of one event loop share the client: concurrent calls on its pool.
            got = await asyncio.gather(*(rr.rerank(u, [1, 2]) for u in range(20)))
            assert all(rows == [Ranked(1, None, 1), Ranked(2, None, 2)] for rows in got)
        with pytest.raises(RerankdbError, match="not open"):
            await rr.kinds()

    asyncio.run(use())
