"""Least privilege: log in as a user of each rerankdb role and check what it can and cannot do."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
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
    "select * from rerankdb.sequence_model",
    "select seq from rerankdb.item_rank",
    "update rerankdb.settings set sequence_weight = 0",
    "select * from rerankdb.interaction_queue",
    "insert into rerankdb.interaction_queue (interaction_id, item_id, user_id)"
    " select interaction_id, item_id, user_id from rerankdb.interactions",
    "select rerankdb.refresh_centers()",
    "select rerankdb.refresh_collab_keys()",
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
        "select rerankdb.set_user_vectors(array[1]::bigint[], array[array_fill(1, array[384])::vector])",
        "select rerankdb.set_item_vectors(array[1]::bigint[], array[array_fill(1, array[384])::vector])",
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
    world: None,
    login: Callable[[str], str],
    conn: psycopg.Connection[Any],
    encoder: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from rerankdb import sequence_space
    from rerankdb.config import Settings
    from rerankdb.worker import Worker

    monkeypatch.setattr(sequence_space, "MIN_USERS", 3)  # a sequence model from this small world

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
    trained = worker.train()
    assert trained.dim == 2, "trained (a small space: 3 users), centers and all"
    assert trained.sequence_epochs > 0, "the sequence model too, stored by the worker role"
    assert conn.execute("select count(*) from rerankdb.user_vectors where seq is not null").fetchone() == (3,)
    conn.execute("delete from rerankdb.interactions where user_id = 3 and item_id = 3")
    assert worker.drain_once().users_rebuilt == 1
    with Client(url) as c:
        assert c.status().pending_interactions == 0
    assert denied(url, "insert into rerankdb.items (item_id, content) values (99, 'x')")
    assert denied(url, "delete from rerankdb.interactions")


def test_the_worker_role_cannot_erase_a_history(
    world: None, login: Callable[[str], str], conn: psycopg.Connection[Any]
) -> None:
    """It may not write the log, so it may not call the function that deletes from it."""
    url = login("rerankdb_worker")
    for statement in [
        "select rerankdb.forget_user(1)",
        "select rerankdb.set_user_vectors(array[1]::bigint[], array[array_fill(1, array[384])::vector])",
        "select rerankdb.set_item_vectors(array[1]::bigint[], array[array_fill(1, array[384])::vector])",
        "select * from rerankdb.rerank(1, array[1, 2])",
        "select * from rerankdb.nearest(array_fill(1, array[384])::vector, null, null, 3)",
    ]:
        assert denied(url, statement), statement
    assert conn.execute("select count(*) from rerankdb.interactions where user_id = 1").fetchone() == (1,)


def test_triggers_fire_without_execute_on_their_functions(
    world: None, login: Callable[[str], str], conn: psycopg.Connection[Any]
) -> None:
    """PostgreSQL checks EXECUTE on a trigger function when the trigger is created, not when
    it fires: the app inserts and the worker writes vectors with no grant on them."""
    triggers = [
        "check_interaction()",
        "enqueue_interactions()",
        "enqueue_user_rebuilds()",
        "enqueue_item()",
        "normalize_embedding()",
    ]
    for role in ("rerankdb_app", "rerankdb_worker"):
        for fn in triggers:
            row = conn.execute("select has_function_privilege(%s, %s, 'execute')", [role, f"rerankdb.{fn}"])
            assert row.fetchone() == (False,), (role, fn)
    with psycopg.connect(db.libpq_url(login("rerankdb_app")), autocommit=True) as app:
        app.execute("insert into rerankdb.items (item_id, content) values (7, 'a new item')")
        app.execute("insert into rerankdb.interactions (user_id, item_id) values (1, 3)")
        app.execute("insert into rerankdb.interactions (user_id, item_id) values (2, 3)")
        app.execute("delete from rerankdb.interactions where user_id = 2")
    with psycopg.connect(db.libpq_url(login("rerankdb_worker")), autocommit=True) as worker:
        worker.execute(
            "insert into rerankdb.item_vectors (item_id, embedding) values (7, array_fill(2, array[384])::vector)"
        )
    queued = conn.execute(
        "select (select count(*) from rerankdb.interaction_queue), (select count(*) from rerankdb.item_queue),"
        " (select round(vector_norm(embedding)::numeric, 6) from rerankdb.item_vectors where item_id = 7)"
    ).fetchone()
    assert queued == (1, 1, 1), "queued by their triggers; the vector normalized by its trigger"
    rebuilds = conn.execute("select user_id from rerankdb.user_rebuild_queue").fetchall()
    assert rebuilds == [(2,)], "the delete queued its user's rebuild"


# --- the README's table is the grants -----------------------------------------------------

README = Path(__file__).resolve().parent.parent / "README.md"
ROLES = ("rerankdb_app", "rerankdb_reader", "rerankdb_worker")
TABLES = {"items", "interactions", "interaction_kinds", "workers", "item_vectors", "user_vectors"}


def roles_table() -> dict[str, dict[str, set[str]]]:
    """README.md, "### Roles": per role, the backticked names of each column."""
    text = README.read_text(encoding="utf-8")
    section = text.split("\n### Roles\n", 1)[1].split("\n#", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("|")]
    header = [c.strip() for c in rows[0].strip("|").split("|")]
    assert header[:3] == ["role", "may execute", "may write"] and "cannot" in header, header
    out: dict[str, dict[str, set[str]]] = {}
    for line in rows[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        role = cells[0].strip("`")
        # (in "cannot", the functions are the names after its "call")
        cells = [c.split("call ", 1)[1] if h == "cannot" else c for h, c in zip(header, cells, strict=True)]
        out[role] = {h: set(re.findall(r"`([^`]+)`", c)) for h, c in zip(header, cells, strict=True)}
    return out


def executable(conn: psycopg.Connection[Any], role: str) -> set[str]:
    rows = conn.execute(
        "select p.proname from pg_proc p where p.pronamespace = 'rerankdb'::regnamespace"
        " and has_function_privilege(%s, p.oid, 'execute')",
        [role],
    ).fetchall()
    return {r[0] for r in rows}


def test_each_role_executes_exactly_what_the_readme_lists(conn: psycopg.Connection[Any]) -> None:
    """The table in README.md, "### Roles", against has_function_privilege over pg_proc."""
    names = [
        r[0]
        for r in conn.execute("select proname from pg_proc where pronamespace = 'rerankdb'::regnamespace")
    ]
    assert len(names) == len(set(names)), "no overloads: a name is a function"
    table = roles_table()
    assert set(table) == set(ROLES)
    for role in ROLES:
        listed = table[role]["may execute"]
        assert listed <= set(names), f"{role}: the README lists unknown functions {listed - set(names)}"
        assert executable(conn, role) == listed, role
        refused = table[role]["cannot"] & set(names)
        assert refused and not refused & executable(conn, role), role
        for relation in table[role]["may write"]:
            if "." not in relation and relation in TABLES:
                row = conn.execute(
                    "select has_table_privilege(%s, %s, 'insert')", [role, f"rerankdb.{relation}"]
                )
                assert row.fetchone() == (True,), (role, relation)


def test_0010_downgrade_restores_what_0009_had(empty_db_url: str) -> None:
    """Grants, functions and the status view: 0009, up to head and down again, is 0009."""
    url = empty_db_url
    migrate.upgrade(url, dim=8, revision="0009")
    before = catalog_state(url)
    migrate.upgrade(url)
    assert catalog_state(url) != before
    migrate.downgrade(url, revision="0009")
    assert catalog_state(url) == before


def catalog_state(url: str) -> dict[str, Any]:
    with psycopg.connect(db.libpq_url(url)) as c:
        return {
            "execute": c.execute(
                "select r, p.oid::regprocedure::text from pg_proc p, unnest(%s::text[]) r"
                " where p.pronamespace = 'rerankdb'::regnamespace and has_function_privilege(r, p.oid, 'execute')"
                " order by 1, 2",
                [[*ROLES, "public"]],
            ).fetchall(),
            "tables": c.execute(
                "select grantee, table_name, privilege_type from information_schema.role_table_grants"
                " where table_schema = 'rerankdb' and grantee = any(%s) order by 1, 2, 3",
                [list(ROLES)],
            ).fetchall(),
            "functions": c.execute(
                "select p.oid::regprocedure::text, pg_get_functiondef(p.oid) from pg_proc p"
                " where p.pronamespace = 'rerankdb'::regnamespace order by 1"
            ).fetchall(),
            "status": c.execute("select pg_get_viewdef('rerankdb.status')").fetchone(),
        }


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
        assert denied(url, "select * from rerankdb.nearest(array_fill(1, array[384])::vector, null, null, 3)")
        assert denied(
            url, "select * from rerankdb.diversify(array[1, 2]::bigint[], array[1, 0.5], 0.5, 2, true)"
        )


def test_the_app_role_loads_a_large_history_and_manages_kinds_through_the_triggers(
    login: Callable[[str], str], conn: psycopg.Connection[Any], tmp_path: Any, monkeypatch: Any
) -> None:
    """Revision 0016's triggers run as their owner: the app role's large load queues its
    users for a rebuild, and its renames and deletes of kinds keep the key's rules."""
    from rerankdb import load

    monkeypatch.setattr(load, "BY_USER_MIN", 2)
    path = tmp_path / "h.csv"
    path.write_text("user_id,item_id,kind\n1,1,view\n1,2,like\n2,3,view\n")
    with psycopg.connect(db.libpq_url(login("rerankdb_app")), autocommit=True) as app:
        assert load.load_interactions(app, path).users_queued == 2
        app.execute("insert into rerankdb.interaction_kinds (kind, weight) values ('rate', 2)")
        app.execute("update rerankdb.interactions set kind = 'rate' where user_id = 2")
        app.execute("update rerankdb.interaction_kinds set kind = 'rating' where kind = 'rate'")
        with pytest.raises(psycopg.errors.ForeignKeyViolation):
            app.execute("delete from rerankdb.interaction_kinds where kind = 'rating'")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            app.execute("select rerankdb.check_kinds()")
    assert conn.execute("select user_id from rerankdb.user_rebuild_queue order by 1").fetchall() == [
        (1,),
        (2,),
    ]
    assert conn.execute("select kind from rerankdb.interactions where user_id = 2").fetchall() == [
        ("rating",)
    ]
    assert conn.execute("select count(*) from rerankdb.interaction_queue").fetchone() == (0,)
