"""Revision 0010's papercuts: NULL options, what an interaction time's message says, items
with nothing to embed, and `rerankdb tune` as a role that may not tune."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np
import psycopg
import pytest

from rerankdb import Client
from tests.helpers import load_items
from tests.test_cli import cli
from tests.worker_helpers import add_items, drain, status

# --- NULL options: NULL means the default only where the default is NULL -------------------

V = "array_fill(1, array[384])::vector"

NULL_IS_AN_ERROR = [
    ("select * from rerankdb.rerank(1, array[1, 2], diversity => null)", "diversity"),
    ("select * from rerankdb.rerank(1, array[1, 2], exclude_seen => null)", "exclude_seen"),
    ("select * from rerankdb.rerank_scored(1, array[1, 2], array[1, 2], weight => null)", "weight"),
    ("select * from rerankdb.rerank_scored(1, array[1, 2], array[1, 2], diversity => null)", "diversity"),
    (
        "select * from rerankdb.rerank_scored(1, array[1, 2], array[1, 2], exclude_seen => null)",
        "exclude_seen",
    ),
    ("select * from rerankdb.rerank_scored(1, array[1, 2], null)", "base_scores"),
    ("select * from rerankdb.recommend(1, k => null)", "rerankdb.recommend: k"),
    ("select * from rerankdb.recommend(1, exclude_seen => null)", "rerankdb.recommend: exclude_seen"),
    ("select * from rerankdb.similar_items(1, null)", "rerankdb.similar_items: k"),
    ("select * from rerankdb.explain(1, array[1], null)", "n must be"),
]


@pytest.fixture
def seen(client: Client, conn: psycopg.Connection[Any], rng: np.random.Generator) -> None:
    """Five items; user 1 likes item 2 (folded)."""
    load_items(client, rng.standard_normal((5, 384)))
    conn.execute("insert into rerankdb.interactions (user_id, item_id, kind) values (1, 2, 'like')")
    drain(conn, None)


@pytest.mark.parametrize(("statement", "named"), NULL_IS_AN_ERROR)
def test_a_null_option_with_a_default_is_an_error(
    seen: None, conn: psycopg.Connection[Any], statement: str, named: str
) -> None:
    with pytest.raises(psycopg.errors.InvalidParameterValue, match=named):
        conn.execute(statement)


def test_recommend_refuses_null_exclude_seen_instead_of_returning_seen_items(
    seen: None, conn: psycopg.Connection[Any]
) -> None:
    assert 2 not in {r[0] for r in conn.execute("select item_id from rerankdb.recommend(1, 5)")}
    with pytest.raises(
        psycopg.errors.InvalidParameterValue, match="exclude_seen must be true or false, got NULL"
    ):
        conn.execute("select item_id from rerankdb.recommend(1, 5, null)")


def test_a_null_option_whose_default_is_null_means_the_default(
    seen: None, conn: psycopg.Connection[Any]
) -> None:
    """k NULL: every row; context_items NULL: no context."""
    plain = conn.execute("select * from rerankdb.rerank(1, array[1, 2, 3])").fetchall()
    assert len(plain) == 3
    assert conn.execute("select * from rerankdb.rerank(1, array[1, 2, 3], null, 0, null)").fetchall() == plain
    scored = conn.execute(
        "select * from rerankdb.rerank_scored(1, array[1, 2, 3], array[3, 2, 1])"
    ).fetchall()
    assert (
        conn.execute(
            "select * from rerankdb.rerank_scored(1, array[1, 2, 3], array[3, 2, 1], 0.5, null, 0, null)"
        ).fetchall()
        == scored
    )


# --- an interaction time: the milliseconds hint only where it looks like milliseconds --------


def refused(conn: psycopg.Connection[Any], occurred_at: str) -> psycopg.errors.DatetimeFieldOverflow:
    with pytest.raises(psycopg.errors.DatetimeFieldOverflow) as caught:
        conn.execute(
            f"insert into rerankdb.interactions (user_id, item_id, occurred_at) values (1, 1, {occurred_at})"
        )
    return caught.value


@pytest.mark.parametrize("occurred_at", ["'infinity'", "'-infinity'"])
def test_an_infinite_time_is_called_infinite_without_the_milliseconds_hint(
    conn: psycopg.Connection[Any], occurred_at: str
) -> None:
    add_items(conn, {1: "an item"})
    err = refused(conn, occurred_at)
    assert "must be a finite time" in str(err)
    assert "milliseconds" not in str(err) + (err.diag.message_hint or "")


def test_a_time_a_day_ahead_says_how_far_and_the_tolerance(conn: psycopg.Connection[Any]) -> None:
    add_items(conn, {1: "an item"})
    err = refused(conn, "now() + interval '1 day'")
    assert "is in the future by 1 day" in str(err) and "(future_tolerance is 00:05:00)" in str(err)
    assert "milliseconds" not in str(err) + (err.diag.message_hint or "")
    assert "future_tolerance" in (err.diag.message_hint or "")


def test_milliseconds_as_seconds_get_the_milliseconds_hint(conn: psycopg.Connection[Any]) -> None:
    add_items(conn, {1: "an item"})
    err = refused(conn, "to_timestamp(1764000000000)")
    assert "is in the future" in str(err) and "milliseconds passed as seconds" in str(err)
    assert "not milliseconds" in (err.diag.message_hint or "")


def test_interaction_problem_says_the_same(conn: psycopg.Connection[Any]) -> None:
    """What rerankdb load reports per line comes from the same function."""
    row = conn.execute(
        "select rerankdb.interaction_problem(now() + interval '2 hours', 1),"
        " rerankdb.interaction_problem(to_timestamp(1764000000000), 1),"
        " rerankdb.interaction_problem('infinity', 1), rerankdb.interaction_problem(now(), 1)"
    ).fetchone()
    assert row is not None
    assert "in the future by 02:00:00" in row[0] and "milliseconds" not in row[0]
    assert "milliseconds passed as seconds" in row[1]
    assert row[2] == "occurred_at must be a finite time, got infinity" and row[3] is None


# --- an item with nothing to embed is set aside, once --------------------------------------


def test_an_item_with_blank_content_is_set_aside_once_and_requeued_by_a_change(
    conn: psycopg.Connection[Any], encoder: Any, caplog: pytest.LogCaptureFixture
) -> None:
    add_items(conn, {1: "a fine text", 2: "  \n\t ", 3: ""})
    with caplog.at_level(logging.WARNING, logger="rerankdb.item_refresh"):
        assert drain(conn, encoder).items_embedded == 1
        assert drain(conn, encoder).items_failed == 0, "not retried"
    due = conn.execute("select count(*) from rerankdb.item_queue where not_before < 'infinity'").fetchone()
    assert due == (0,), "no backoff ever ends: due again only once the content changes"
    assert len([r for r in caplog.records if "set aside" in r.getMessage()]) == 2, "one warning each"
    st = status(conn)
    assert (st["pending_items"], st["failed_items"], st["set_aside_items"], st["item_lag"]) == (0, 0, 2, None)

    conn.execute("update rerankdb.items set content = 'a text at last' where item_id = 2")
    assert status(conn)["item_lag"] is not None, "queued afresh"
    assert drain(conn, encoder).items_embedded == 1
    st = status(conn)
    assert (st["set_aside_items"], st["item_lag"]) == (1, None)
    assert conn.execute("select item_id from rerankdb.item_vectors order by 1").fetchall() == [(1,), (2,)]


# --- rerankdb tune as the app role ---------------------------------------------------------


def test_tune_as_the_app_role_is_a_permission_error(seen: None, login: Callable[[str], str]) -> None:
    from rerankdb.config import Settings
    from rerankdb.errors import PermissionDeniedError
    from rerankdb.worker import Worker

    url = login("rerankdb_app")
    with pytest.raises(PermissionDeniedError, match="owner or a member of rerankdb_worker"):
        Worker(url, Settings(), None, listen=False).tune(dry_run=True)
    out = cli("tune", "--no-encoder", "--dry-run", url=url)
    assert out.returncode == 1
    assert "rerankdb: rerankdb tune reads the log" in out.stderr and "rerankdb_worker" in out.stderr
    assert "database error" not in out.stderr
