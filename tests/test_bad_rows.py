"""No bad row stops anyone: refused at the door, or set aside while the rest is folded."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np
import psycopg
import pytest

from rerankdb import Client, Interaction, InvalidInputError
from rerankdb.fold import problems
from tests.worker_helpers import (
    T0,
    add_interactions,
    assert_matches_rebuild,
    drain,
    state_counts,
    status,
    user_vectors,
)

GOOD = "insert into rerankdb.interactions (user_id, item_id, kind) values (2, 1, 'like')"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ("(400001, 1, 'like', 'infinity', null)", "occurred_at must be a finite time, got infinity"),
        ("(400001, 1, 'like', '-infinity', null)", "occurred_at must be a finite time, got -infinity"),
        ("(400001, 1, 'like', now() + interval '1 day', null)", "is in the future"),
        ("(400001, 1, 'like', to_timestamp(1764000000000), null)", "is in the future"),
        ("(400001, 1, 'like', now(), 1e7)", "weight must be between -1e6 and 1e6, got 10000000"),
    ],
)
def test_the_door_refuses_what_cannot_be_folded(
    conn: Any, encoder: Any, catalog: Any, values: str, message: str
) -> None:
    with pytest.raises(psycopg.DataError, match=message):
        conn.execute(
            "insert into rerankdb.interactions (user_id, item_id, kind, occurred_at, weight) values " + values
        )
    assert conn.execute("select count(*) from rerankdb.interactions").fetchone() == (0,), "nothing written"
    conn.execute(GOOD)
    drain(conn, encoder)
    assert state_counts(conn) == {2: 1}, "the good row is folded"


def test_the_door_refuses_a_kind_weight_that_cannot_be_folded(conn: Any, encoder: Any, catalog: Any) -> None:
    """A kind from before the check on kinds (its weight never validated): a row of that kind
    without a weight of its own is refused by the statement's check, the whole statement."""
    conn.execute("alter table rerankdb.interaction_kinds drop constraint interaction_kinds_weight_within_1e6")
    conn.execute("insert into rerankdb.interaction_kinds (kind, weight) values ('legacy', 1e7)")
    conn.execute(
        "alter table rerankdb.interaction_kinds add constraint interaction_kinds_weight_within_1e6"
        " check (weight between -1e6 and 1e6) not valid"
    )
    with pytest.raises(psycopg.errors.NumericValueOutOfRange, match="weight must be between -1e6 and 1e6"):
        conn.execute(
            "insert into rerankdb.interactions (user_id, item_id, kind)"
            " values (1, 1, 'like'), (1, 2, 'legacy'), (1, 3, 'like')"
        )
    assert conn.execute("select count(*) from rerankdb.interactions").fetchone() == (0,), "nothing written"
    conn.execute(
        "insert into rerankdb.interactions (user_id, item_id, kind, weight) values (1, 2, 'legacy', 1)"
    )
    drain(conn, encoder)
    assert state_counts(conn) == {1: 1}, "its own weight is fine: folded"


def test_the_hint_names_the_usual_mistake(conn: Any, catalog: Any) -> None:
    with pytest.raises(psycopg.errors.DatetimeFieldOverflow) as caught:
        conn.execute(
            "insert into rerankdb.interactions (user_id, item_id, occurred_at)"
            " values (1, 1, to_timestamp(1764000000000))"
        )
    assert "not milliseconds" in (caught.value.diag.message_hint or "")


def test_clock_skew_within_the_tolerance_is_fine_and_tunable(conn: Any, catalog: Any) -> None:
    conn.execute(
        "insert into rerankdb.interactions (user_id, item_id, occurred_at) values (1, 1, now() + interval '4 minutes')"
    )
    conn.execute("update rerankdb.settings set future_tolerance = '1 hour'")
    conn.execute(
        "insert into rerankdb.interactions (user_id, item_id, occurred_at) values (1, 1, now() + interval '50 minutes')"
    )
    assert conn.execute("select count(*) from rerankdb.interactions").fetchone() == (2,)


def test_kind_weights_are_bounded(conn: Any) -> None:
    with pytest.raises(psycopg.errors.CheckViolation, match="interaction_kinds_weight_within_1e6"):
        conn.execute("insert into rerankdb.interaction_kinds (kind, weight) values ('boom', 3e38)")


@pytest.mark.parametrize(
    ("interaction", "message"),
    [
        (Interaction(1, 1, occurred_at=datetime(3000, 1, 1, tzinfo=timezone.utc)), "is in the future"),
        (Interaction(1, 1, weight=1e39), "weight must be between -1e6 and 1e6"),
        (Interaction(1, 1, context="a\x00b"), "context contains a NUL character"),
        (Interaction(1, 1, occurred_at="yesterday"), "occurred_at must be a datetime"),  # type: ignore[arg-type]
    ],
)
def test_the_client_refuses_them_too_and_writes_nothing(
    client: Client, conn: Any, interaction: Interaction, message: str
) -> None:
    with pytest.raises(InvalidInputError, match=message):
        client.record_interactions([Interaction(2, 1), interaction])
    assert conn.execute("select count(*) from rerankdb.interactions").fetchone() == (0,)


# --- rows that got in anyway are set aside --------------------------------------------------


def sneak_in(conn: Any, rows: list[tuple[Any, ...]]) -> None:
    """Write interactions past the door, as a database upgraded from before revision 0005 has them."""
    with conn.transaction():
        conn.execute("set local session_replication_role = replica")  # no triggers
        conn.execute(
            "alter table rerankdb.interaction_kinds drop constraint interaction_kinds_weight_within_1e6"
        )
        conn.execute("insert into rerankdb.interaction_kinds (kind, weight) values ('huge', 3e38)")
        add_interactions(conn, rows)
        conn.execute(
            "insert into rerankdb.interaction_queue (interaction_id, item_id, user_id)"
            " select interaction_id, item_id, user_id from rerankdb.interactions"
        )


def test_old_poison_rows_are_set_aside_and_the_rest_is_folded(conn: Any, encoder: Any, catalog: Any) -> None:
    sneak_in(
        conn,
        [
            (400001, 1, "like", None, None, "infinity"),
            (400002, 1, "huge", None, None, T0),
            (400002, 2, "huge", None, None, T0),  # two of them overflow float32
            (400003, 2, "like", None, None, "3000-01-01"),  # would freeze the user
            (5, 3, "like", None, None, T0),
        ],
    )
    add_interactions(conn, [(6, 4, "like", None, None, T0)])  # through the door, after them
    report = drain(conn, encoder)
    assert (report.interactions_folded, report.interactions_set_aside) == (2, 4)
    assert set(user_vectors(conn)) == {5, 6}
    failed = conn.execute(
        "select attempts, last_error, not_before > now() from rerankdb.interaction_queue order by interaction_id"
    ).fetchall()
    assert [f[0] for f in failed] == [1, 1, 1, 1] and all(f[2] for f in failed)
    assert "occurred_at must be a finite time, got infinity" in failed[0][1]
    assert "weight must be between -1e6 and 1e6, got 3e+38" in failed[1][1]
    assert "occurred_at 3000-01-01T00:00:00+00:00 is in the future" in failed[3][1]
    st = status(conn)
    assert (st["failed_interactions"], st["pending_interactions"]) == (4, 0)
    assert_matches_rebuild(conn, encoder)  # the rebuild sets the same rows aside and counts the rest
    assert status(conn)["failed_interactions"] == 4


def test_a_row_that_breaks_the_encoder_is_found_and_set_aside(conn: Any, encoder: Any, catalog: Any) -> None:
    from tests.test_item_refresh import FailingEncoder

    rows = [(u, 1 + u % 6, "view", None, "BOOM" if u == 17 else None, T0) for u in range(1, 41)]
    add_interactions(conn, rows)
    report = drain(conn, FailingEncoder(encoder))
    assert (report.interactions_folded, report.interactions_set_aside) == (39, 1)
    assert 17 not in user_vectors(conn) and len(user_vectors(conn)) == 39
    error = conn.execute("select last_error from rerankdb.interaction_queue").fetchone()[0]
    assert "tokenizer exploded" in error


def test_a_set_aside_row_is_retried_after_its_backoff(conn: Any, encoder: Any, catalog: Any) -> None:
    from tests.test_item_refresh import FailingEncoder

    add_interactions(conn, [(1, 1, "view", None, "BOOM", T0)])
    drain(conn, FailingEncoder(encoder))
    assert drain(conn, encoder).interactions_folded == 0, "backing off"
    conn.execute("update rerankdb.interaction_queue set not_before = now()")
    assert drain(conn, encoder).interactions_folded == 1, "the encoder works again: folded"
    assert status(conn)["failed_interactions"] == 0
    assert_matches_rebuild(conn, encoder)


def test_problems_names_each_bad_row() -> None:
    times = np.array([0.0, np.inf, -np.inf, 1e12, 100.0, 50.0])
    weights = np.array([1.0, 1.0, 1.0, 1.0, 3e38, np.nan])
    found = problems(times, weights, now=100.0, tolerance=300.0)
    assert set(found) == {1, 2, 3, 4, 5}
    assert "year 33659" in found[3] and "milliseconds" in found[3]
    assert found[4] == "weight must be between -1e6 and 1e6, got 3e+38"


# --- the log changes: users follow it ---------------------------------------------------------


def test_deleting_or_changing_interactions_rebuilds_their_users(
    conn: Any, encoder: Any, catalog: dict[int, np.ndarray]
) -> None:
    add_interactions(
        conn, [(1, 1, "like", None, None, T0), (1, 3, "like", None, None, T0), (2, 2, "like", None, None, T0)]
    )
    drain(conn, encoder)
    conn.execute("delete from rerankdb.interactions where user_id = 1 and item_id = 3")
    assert status(conn)["users_to_rebuild"] == 1
    report = drain(conn, encoder)
    assert report.users_rebuilt == 1
    np.testing.assert_allclose(user_vectors(conn)[1], catalog[1], atol=1e-6)
    assert state_counts(conn) == {1: 1, 2: 1}

    conn.execute("update rerankdb.interactions set user_id = 3 where user_id = 2")
    drain(conn, encoder)
    assert set(user_vectors(conn)) == {1, 3}, "user 2 has nothing left; user 3 has the row"
    conn.execute("delete from rerankdb.interactions where user_id = 1")
    drain(conn, encoder)
    assert 1 not in user_vectors(conn)
    assert_matches_rebuild(conn, encoder)


def test_forget_user_erases_everything_of_one_user(
    client: Client, conn: Any, encoder: Any, catalog: Any
) -> None:
    add_interactions(conn, [(1, 1, "like", None, None, T0), (2, 2, "like", None, None, T0)])
    drain(conn, encoder)
    add_interactions(conn, [(1, 2, "like", None, None, T0)])  # queued, not folded yet
    assert client.forget_user(1) == 2
    assert client.forget_user(1) == 0, "unknown: nothing to do, not an error"
    left = conn.execute(
        "select (select count(*) from rerankdb.interactions where user_id = 1),"
        " (select count(*) from rerankdb.user_state where user_id = 1),"
        " (select count(*) from rerankdb.user_vectors where user_id = 1),"
        " (select count(*) from rerankdb.interaction_queue),"
        " (select count(*) from rerankdb.user_rebuild_queue)"
    ).fetchone()
    assert left == (0, 0, 0, 0, 0)
    assert set(user_vectors(conn)) == {2}
    with pytest.raises(psycopg.errors.NullValueNotAllowed):
        conn.execute("select rerankdb.forget_user(null)")


def test_future_times_after_the_fix_fold_normally(conn: Any, encoder: Any, catalog: Any) -> None:
    """The frozen-user bug: with the door, a user keeps following new interactions."""
    add_interactions(conn, [(1, 1, "view", None, None, datetime.now(timezone.utc) - timedelta(days=1))])
    for _ in range(3):
        add_interactions(conn, [(1, 5, "purchase", None, None, datetime.now(timezone.utc))])
    drain(conn, encoder)
    assert user_vectors(conn)[1] @ catalog[5] > 0.9


def test_a_change_during_a_rebuild_is_not_dequeued_with_it(
    db_url: str, conn: Any, encoder: Any, catalog: Any
) -> None:
    """A rebuild dequeues only the request it read: a change committed meanwhile stays queued."""
    from rerankdb import db
    from rerankdb.user_refresh import Q

    add_interactions(
        conn, [(1, 1, "like", None, None, T0), (1, 2, "like", None, None, T0), (1, 3, "like", None, None, T0)]
    )
    drain(conn, encoder)
    conn.execute("delete from rerankdb.interactions where item_id = 1")  # user 1 queued
    with db.connect(db_url) as rebuild:  # a rebuild, in its transaction, reads the request...
        requests = rebuild.execute(Q["rebuild_requests"], {"users": [1]}).fetchall()
        conn.execute("delete from rerankdb.interactions where item_id = 2")  # ...a change commits...
        rebuild.execute(  # ...and it dequeues what it read
            Q["dequeue_rebuild_requests"],
            {"users": [r[0] for r in requests], "enqueued": [r[1] for r in requests]},
        )
        rebuild.commit()
    assert status(conn)["users_to_rebuild"] == 1, "the newer change is still queued"
    drain(conn, encoder)
    np.testing.assert_allclose(user_vectors(conn)[1], catalog[3], atol=1e-6)


def test_a_user_whose_rebuild_fails_waits_and_holds_up_nobody(conn: Any, encoder: Any, catalog: Any) -> None:
    from tests.test_item_refresh import FailingEncoder

    add_interactions(
        conn,
        [
            (1, 1, "like", None, "BOOM fine at first", T0),
            (1, 2, "like", None, None, T0),
            (2, 1, "like", None, None, T0),
            (2, 3, "like", None, None, T0),
        ],
    )
    drain(conn, encoder)  # folded while the encoder could read it
    conn.execute("delete from rerankdb.interactions where item_id = 2 or item_id = 3")
    report = drain(conn, FailingEncoder(encoder))  # now user 1's rebuild breaks the encoder
    assert report.users_rebuilt == 1
    np.testing.assert_allclose(user_vectors(conn)[2], catalog[1], atol=1e-6)
    row = conn.execute(
        "select user_id, attempts, last_error, not_before > now() from rerankdb.user_rebuild_queue"
    ).fetchone()
    assert row[:2] == (1, 1) and "tokenizer exploded" in row[2] and row[3]


def test_when_every_row_fails_alone_nothing_is_set_aside(conn: Any, encoder: Any, catalog: Any) -> None:
    """An outage (here: an encoder that fails on every context) is not the rows' fault."""
    from rerankdb.user_refresh import refresh_users
    from tests.worker_helpers import CONTEXT_WEIGHT, DIM

    class Broken:
        name, dim = encoder.name, encoder.dim

        def encode(self, texts: list[str]) -> np.ndarray:
            raise RuntimeError("encoder offline")

    add_interactions(conn, [(u, 1, "like", None, "some context", T0) for u in (1, 2, 3)])
    with pytest.raises(RuntimeError, match="encoder offline"):
        refresh_users(conn, Broken(), CONTEXT_WEIGHT, DIM)
    assert status(conn)["failed_interactions"] == 0
    assert drain(conn, encoder).interactions_folded == 3


def test_the_door_checks_the_kinds_weight_too(conn: Any) -> None:
    with conn.transaction():
        conn.execute(
            "alter table rerankdb.interaction_kinds drop constraint interaction_kinds_weight_within_1e6"
        )
        conn.execute("insert into rerankdb.interaction_kinds (kind, weight) values ('huge', 3e38)")
    with pytest.raises(psycopg.errors.NumericValueOutOfRange, match="weight must be between -1e6 and 1e6"):
        conn.execute("insert into rerankdb.interactions (user_id, item_id, kind) values (1, 1, 'huge')")
