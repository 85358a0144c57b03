"""Least privilege: log in as a user of each rerankdb role and check what it can and cannot do."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import psycopg
import pytest

from rerankdb import Client, Interaction, Item, db, migrate
from rerankdb.drain import drain
from tests.helpers import load_items


@pytest.fixture
def world(client: Client, conn: psycopg.Connection[Any], rng: np.random.Generator) -> None:
    """Items with vectors and user 1 with a folded history."""
    load_items(client, rng.standard_normal((5, 384)))
    client.record_interactions([Interaction(1, 2, "like")])
    drain(conn, None, 0.0, 384)


def denied(url: str, statement: str) -> bool:
    with psycopg.connect(db.libpq_url(url), autocommit=True) as c:
        try:
            c.execute(statement)  # type: ignore[arg-type]
        except psycopg.errors.InsufficientPrivilege:
            return True
    return False


SECRETS = [
    "select embedding from rerankdb.user_vectors",
    "select * from rerankdb.item_vectors",
    "select * from rerankdb.item_rank",
    "select * from rerankdb.user_state",
    "select * from rerankdb.interaction_queue",
    "insert into rerankdb.interaction_queue (interaction_id, item_id, user_id)"
    " select interaction_id, item_id, user_id from rerankdb.interactions",
    "select rerankdb.refresh_centers()",
    "update rerankdb.settings set collab_weight = 0",
]


def test_reader_reranks_without_seeing_any_embedding(world: None, login: Callable[[str], str]) -> None:
    url = login("rerankdb_reader")
    with Client(url) as reader:
        ranked = reader.rerank(1, [1, 2, 3])
        assert ranked[0].item_id == 2 and ranked[0].score is not None
        assert reader.recommend(1, 2) and reader.similar_items(2, 2)
        assert reader.rerank_scored(1, [1, 2], [0.5, 0.1])
    for statement in [
        *SECRETS,
        "select * from rerankdb.interactions",
        "insert into rerankdb.interactions (user_id, item_id) values (1, 1)",
        "select * from rerankdb.status",
        "select rerankdb.forget_user(1)",
    ]:
        assert denied(url, statement), statement


def test_app_writes_items_and_interactions_but_not_the_queue(
    world: None, login: Callable[[str], str], conn: psycopg.Connection[Any]
) -> None:
    url = login("rerankdb_app")
    with Client(url) as app:
        app.upsert_items([Item(6, "new item")])
        app.record_interactions([Interaction(1, 3, "view"), Interaction(2, 3, "like")])
        app.set_item_vectors([6], np.ones((1, 384)))
        assert app.rerank(1, [3, 6])[0].score is not None
        st = app.status()
        assert (st.schema_revision, st.items, st.pending_interactions) == (migrate.head_revision(), 6, 2)
        assert (st.storage, st.text_index) == ("vector", "valid")
        assert app.forget_user(2) == 1
    for statement in SECRETS:
        assert denied(url, statement), statement
    # Its inserts were queued by the trigger, with the owner's rights, exactly once.
    assert conn.execute("select count(*) from rerankdb.interaction_queue").fetchone() == (1,)


def test_worker_role_runs_the_worker(
    world: None, login: Callable[[str], str], conn: psycopg.Connection[Any], encoder: Any
) -> None:
    from rerankdb.config import Settings
    from rerankdb.worker import Worker

    url = login("rerankdb_worker")
    conn.execute("insert into rerankdb.items (item_id, content) values (9, 'a documentary about whales')")
    conn.execute(
        "insert into rerankdb.interactions (user_id, item_id) values (1, 9), (2, 9), (2, 1), (3, 1), (3, 3), (3, 9)"
    )
    worker = Worker(url, Settings(), encoder)
    report = worker.drain_once()
    # The new item is embedded (the world's five brought their vectors: not queued).
    assert (report.items_embedded, report.interactions_folded) == (1, 6), "every statement was allowed"
    assert worker.rebuild() == 7
    assert worker.train().dim == 2, "trained (a small space: 3 users), centers and all"
    conn.execute("delete from rerankdb.interactions where user_id = 3 and item_id = 3")
    assert worker.drain_once().users_rebuilt == 1
    with Client(url) as c:
        assert c.status().pending_interactions == 0
    assert denied(url, "insert into rerankdb.items (item_id, content) values (99, 'x')")
    assert denied(url, "delete from rerankdb.interactions")


def test_nobody_else_gets_anything(world: None, login: Callable[[str], str], conn: Any) -> None:
    """A login role in none of the three sees nothing (PUBLIC has no EXECUTE on rerankdb)."""
    conn.execute("create role rerankdb_test_nobody_group nologin")
    try:
        url = login("rerankdb_test_nobody_group")
        assert denied(url, "select * from rerankdb.rerank(1, array[1])")
        assert denied(url, "select * from rerankdb.items")
    finally:
        conn.execute("drop role rerankdb_test_nobody_group")


def test_public_can_execute_no_rerankdb_function(conn: psycopg.Connection[Any]) -> None:
    """Every function of the schema is revoked from PUBLIC (a new revision must revoke its own)."""
    callable_by_all = conn.execute(
        "select p.oid::regprocedure::text from pg_proc p"
        " where p.pronamespace = 'rerankdb'::regnamespace and has_function_privilege('public', p.oid, 'execute')"
    ).fetchall()
    assert callable_by_all == []


def test_nearest_stays_the_owners(world: None, login: Callable[[str], str]) -> None:
    """With chosen query vectors it would give the item embeddings away."""
    for role in ("rerankdb_reader", "rerankdb_app"):
        url = login(role)
        assert denied(url, "select * from rerankdb.nearest(array_fill(1, array[384])::vector, null, 3)")
        assert denied(
            url, "select * from rerankdb.diversify(array[1, 2]::bigint[], array[1, 0.5], 0.5, 2, true)"
        )
