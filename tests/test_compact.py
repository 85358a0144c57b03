"""A bounded log: compaction folds old interactions into user snapshots; rebuilds still equal the state."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np
import pytest

from rerankdb import compact, db, user_refresh
from rerankdb.config import Settings
from rerankdb.errors import InvalidInputError, PermissionDeniedError
from rerankdb.train import train
from rerankdb.worker import Worker
from tests.helpers import load_items
from tests.worker_helpers import (
    CONTEXT_WEIGHT,
    DIM,
    T0,
    add_interactions,
    assert_matches_rebuild,
    drain,
    state_counts,
    user_vectors,
)

DAY = timedelta(days=1)
CUTOFF = T0 + 20 * DAY


def log_rows(rng: np.random.Generator, users: range, days: int = 40) -> list[tuple[Any, ...]]:
    """Each user: 8 interactions spread over ``days`` days, some with context, some weights and kinds."""
    kinds = ["view", "like", "purchase", "dislike"]
    rows = []
    for u in users:
        for k in range(8):
            when = T0 + timedelta(hours=float(rng.uniform(0, days * 24)))
            context = "late night sci-fi" if k == 3 else None
            weight = 2.5 if k == 5 else None
            rows.append((u, int(rng.integers(1, 7)), kinds[k % 4], weight, context, when))
    return rows


def rebuild_everyone(conn: Any, encoder: Any) -> None:
    user_refresh.rebuild_users(conn, encoder, CONTEXT_WEIGHT, DIM, user_refresh.all_users(conn))


def assert_same_vectors(before: dict[int, np.ndarray], after: dict[int, np.ndarray]) -> None:
    assert before.keys() == after.keys()
    for u in before:
        assert np.abs(before[u] - after[u]).max() <= 1e-5, u


def run_compact(conn: Any, encoder: Any, before: datetime = CUTOFF, **kwargs: Any) -> compact.CompactReport:
    return compact.compact(conn, encoder, CONTEXT_WEIGHT, DIM, before, **kwargs)


def count(conn: Any, query: str) -> int:
    row = conn.execute(query).fetchone()
    assert row is not None
    return int(row[0])


def test_compact_then_rebuild_equals_the_state_before(
    conn: Any, encoder: Any, catalog: dict[int, np.ndarray], rng: np.random.Generator
) -> None:
    rows = log_rows(rng, range(1, 13))
    add_interactions(conn, rows)
    drain(conn, encoder)
    before_vectors, before_counts = user_vectors(conn), state_counts(conn)
    old = sum(1 for r in rows if r[5] < CUTOFF)
    assert 0 < old < len(rows)

    report = run_compact(conn, encoder, batch_users=5)  # three batches

    assert report.interactions == old and report.kept == 0
    assert count(conn, "select count(*) from rerankdb.interactions") == len(rows) - old
    assert count(conn, "select count(*) from rerankdb.interactions where occurred_at < '2026-01-21'") == 0
    assert count(conn, "select sum(interactions) from rerankdb.user_snapshot") == old
    assert count(conn, "select count(*) from rerankdb.user_rebuild_queue") == 0  # its deletes queue nobody
    assert_same_vectors(before_vectors, user_vectors(conn))  # compaction does not touch the states
    rebuild_everyone(conn, encoder)
    assert_same_vectors(before_vectors, user_vectors(conn))
    assert state_counts(conn) == before_counts


def test_folds_after_compaction_and_a_second_compaction_still_equal_a_rebuild(
    conn: Any, encoder: Any, catalog: dict[int, np.ndarray], rng: np.random.Generator
) -> None:
    add_interactions(conn, log_rows(rng, range(1, 9)))
    drain(conn, encoder)
    run_compact(conn, encoder)
    add_interactions(conn, [(u, 2, "like", None, "space", T0 + 45 * DAY) for u in (1, 2, 50)])  # 50 is new
    drain(conn, encoder)
    assert_matches_rebuild(conn, encoder)
    second = run_compact(conn, encoder, T0 + 35 * DAY)
    assert second.interactions > 0
    assert_matches_rebuild(conn, encoder)
    row = conn.execute("select compacted_before from rerankdb.worker_state").fetchone()
    assert row == (T0 + 35 * DAY,)


def test_rows_not_counted_yet_are_kept(conn: Any, encoder: Any, catalog: dict[int, np.ndarray]) -> None:
    """Pending, deferred and set-aside rows older than the cutoff stay in the log until folded."""
    add_interactions(conn, [(1, 1, "view", None, None, T0), (2, 2, "view", None, None, T0)])
    drain(conn, encoder)
    conn.execute("insert into rerankdb.items (item_id, content) values (77, 'no vector yet')")
    add_interactions(conn, [(1, 3, "like", None, None, T0 + DAY), (1, 77, "like", None, None, T0 + DAY)])
    # A row written before the checks existed: set aside by the fold.
    conn.execute("alter table rerankdb.interactions disable trigger interactions_check")
    conn.execute(
        "insert into rerankdb.interactions (user_id, item_id, occurred_at) values (2, 4, '-infinity')"
    )
    conn.execute("alter table rerankdb.interactions enable trigger interactions_check")
    conn.execute("update rerankdb.interaction_queue set deferred = true where item_id = 77")

    report = run_compact(conn, encoder)  # row (1, 3) is still pending: nobody folded it

    assert report.interactions == 2 and report.kept == 3
    assert count(conn, "select count(*) from rerankdb.interactions") == 3
    drain(conn, None)  # folds (1, 3); (1, 77) waits for its vector (no encoder); (2, 4) is set aside
    assert count(conn, "select count(*) from rerankdb.interaction_queue where attempts > 0") == 1
    assert_matches_rebuild(conn, encoder)
    again = run_compact(conn, encoder)
    assert (again.interactions, again.kept) == (1, 2)  # (1, 3), folded now
    assert_matches_rebuild(conn, encoder)


def test_a_row_the_fold_refuses_stays_in_the_log(
    conn: Any, encoder: Any, catalog: dict[int, np.ndarray]
) -> None:
    """A row that is not queued but cannot be folded (written before the checks existed) is
    kept; the rows beside it are compacted, and only they are deleted."""
    add_interactions(conn, [(3, 1, "view", None, None, T0), (3, 2, "view", None, None, T0)])
    drain(conn, encoder)
    with conn.transaction():
        conn.execute("set local session_replication_role = replica")  # no triggers: never queued
        conn.execute(
            "insert into rerankdb.interactions (user_id, item_id, occurred_at) values (3, 4, '-infinity')"
        )
    report = run_compact(conn, encoder)
    assert (report.users, report.interactions, report.kept) == (1, 2, 1)
    assert conn.execute("select user_id, item_id from rerankdb.interactions").fetchall() == [(3, 4)]
    assert_matches_rebuild(conn, encoder)


def test_a_user_whose_whole_log_is_compacted_keeps_their_vector(
    conn: Any, encoder: Any, catalog: dict[int, np.ndarray]
) -> None:
    add_interactions(conn, [(5, 1, "like", None, None, T0), (5, 2, "view", None, None, T0 + DAY)])
    drain(conn, encoder)
    before = user_vectors(conn)
    run_compact(conn, encoder)
    assert count(conn, "select count(*) from rerankdb.interactions where user_id = 5") == 0
    user_refresh.rebuild_all(conn, encoder, CONTEXT_WEIGHT, DIM)
    assert_same_vectors(before, user_vectors(conn))
    assert state_counts(conn) == {5: 2}


def test_a_change_after_compaction_rebuilds_on_top_of_the_snapshot(
    conn: Any, encoder: Any, catalog: dict[int, np.ndarray]
) -> None:
    add_interactions(conn, [(5, 1, "like", None, None, T0), (5, 2, "view", None, None, T0 + 30 * DAY)])
    drain(conn, encoder)
    run_compact(conn, encoder)
    conn.execute("delete from rerankdb.interactions where user_id = 5")  # the newer row
    drain(conn, encoder)  # the delete queued a rebuild of user 5
    assert state_counts(conn) == {5: 1}  # the compacted row is still counted
    np.testing.assert_allclose(user_vectors(conn)[5], catalog[1] / np.linalg.norm(catalog[1]), atol=1e-6)


def test_a_rebuild_request_waiting_before_compaction_is_kept(
    conn: Any, encoder: Any, catalog: dict[int, np.ndarray]
) -> None:
    add_interactions(conn, [(5, 1, "like", None, None, T0), (6, 1, "like", None, None, T0)])
    drain(conn, encoder)
    conn.execute("insert into rerankdb.user_rebuild_queue (user_id) values (6)")  # as a change queues it
    run_compact(conn, encoder)
    assert conn.execute("select user_id from rerankdb.user_rebuild_queue").fetchall() == [(6,)]


def test_training_after_compaction_keeps_rebuilds_exact(
    conn: Any, client: Any, rng: np.random.Generator
) -> None:
    """The snapshots' collaborative sums are of the old space after a training: dropped, the text kept."""
    load_items(client, rng.standard_normal((30, DIM)))
    rows = [
        (u, int(i), "like", None, None, T0 + timedelta(days=k * 3))
        for u in range(1, 31)
        for k, i in enumerate(rng.choice(range(1 + (u % 2) * 15, 16 + (u % 2) * 15), 10, replace=False))
    ]
    add_interactions(conn, rows)
    drain(conn, None)
    assert train(conn, None, CONTEXT_WEIGHT, DIM, k=4).dim == 4
    drain(conn, None)
    run_compact(conn, None)
    assert count(conn, "select count(*) from rerankdb.user_snapshot where collab_sum is not null") > 0
    assert_matches_rebuild(conn, None)
    assert train(conn, None, CONTEXT_WEIGHT, DIM, k=4).dim == 4  # a new space; learns from the window
    assert_matches_rebuild(conn, None)
    assert count(conn, "select count(*) from rerankdb.user_vectors where collab is not null") > 0


def test_forget_user_erases_the_snapshot(conn: Any, encoder: Any, catalog: dict[int, np.ndarray]) -> None:
    add_interactions(conn, [(5, 1, "like", None, None, T0), (5, 2, "like", None, None, T0 + 30 * DAY)])
    drain(conn, encoder)
    run_compact(conn, encoder)
    assert conn.execute("select rerankdb.forget_user(5)").fetchone() == (1,)
    assert count(conn, "select count(*) from rerankdb.user_snapshot") == 0
    assert count(conn, "select count(*) from rerankdb.user_state") == 0


def test_bad_cutoffs_and_a_missing_encoder_are_refused_and_write_nothing(
    conn: Any, encoder: Any, catalog: dict[int, np.ndarray]
) -> None:
    add_interactions(conn, [(5, 1, "like", None, "rainy day", T0)])
    drain(conn, encoder)
    with pytest.raises(InvalidInputError, match="must be in the past"):
        run_compact(conn, encoder, datetime.now(timezone.utc) + DAY)
    with pytest.raises(InvalidInputError, match=r"context text.*encoder"):
        run_compact(conn, None)
    with pytest.raises(InvalidInputError, match="positive number of days"):
        compact.cutoff_from_age(0)
    with pytest.raises(InvalidInputError, match=r"positive number of days up to 100000 .*got 1000000"):
        compact.cutoff_from_age(1_000_000)  # a cutoff before year 1: OverflowError once
    assert count(conn, "select count(*) from rerankdb.interactions") == 1
    assert count(conn, "select count(*) from rerankdb.user_snapshot") == 0
    # A naive cutoff is UTC; with context weight 0 no encoder is needed.
    report = compact.compact(conn, None, 0.0, DIM, datetime(2026, 1, 20))
    assert report.before == datetime(2026, 1, 20, tzinfo=timezone.utc) and report.interactions == 1


def test_the_worker_role_compacts_only_where_the_dba_allows_it(
    conn: Any, db_url: str, encoder: Any, catalog: dict[int, np.ndarray], login: Callable[[str], str]
) -> None:
    add_interactions(conn, [(5, 1, "like", None, None, T0)])
    drain(conn, encoder)
    worker_url = login("rerankdb_worker")
    with db.connect(worker_url, autocommit=True) as worker:
        with pytest.raises(PermissionDeniedError, match=r"grant delete on rerankdb\.interactions"):
            run_compact(worker, encoder)
        assert count(conn, "select count(*) from rerankdb.user_snapshot") == 0  # nothing written
        conn.execute("grant delete on rerankdb.interactions to rerankdb_worker")
        try:
            assert run_compact(worker, encoder).interactions == 1
        finally:
            conn.execute("revoke delete on rerankdb.interactions from rerankdb_worker")
    with db.connect(login("rerankdb_app"), autocommit=True) as app, pytest.raises(PermissionDeniedError):
        run_compact(app, encoder, T0 + 40 * DAY)


def test_cli_compact_dry_run_then_for_real(
    db_url: str, conn: Any, encoder: Any, catalog: dict[int, np.ndarray]
) -> None:
    add_interactions(
        conn, [(5, 1, "like", None, None, T0), (5, 2, "like", None, None, datetime.now(timezone.utc))]
    )
    drain(conn, encoder)
    env = {**os.environ, "RERANKDB_DATABASE_URL": db_url}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "rerankdb.cli", "compact", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    dry = cli("--older-than", "30", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "1 interactions are older than" in dry.stdout
    assert count(conn, "select count(*) from rerankdb.interactions") == 2
    bad = cli("--before", "next tuesday")
    assert bad.returncode == 2 and "--before" in bad.stderr
    for days in ("1000000", "1e300", "nan", "0"):
        bad = cli("--older-than", days, "--dry-run")
        assert bad.returncode == 2 and "Traceback" not in bad.stderr, bad.stderr
        assert (
            f"--older-than: must be a positive number of days up to 100000 (about 274 years), got '{days}'"
            in bad.stderr
        )
    done = cli("--before", "2026-01-05")
    assert done.returncode == 0, done.stderr
    assert "compacted 1 interactions of 1 users" in done.stdout
    assert count(conn, "select count(*) from rerankdb.interactions") == 1


def test_the_scheduled_job_keeps_retain_days_of_log(
    db_url: str, conn: Any, encoder: Any, catalog: dict[int, np.ndarray]
) -> None:
    now = datetime.now(timezone.utc)
    add_interactions(
        conn, [(5, 1, "like", None, None, now - 400 * DAY), (5, 2, "like", None, None, now - 9 * DAY)]
    )
    drain(conn, encoder)
    worker = Worker(db_url, Settings(compact_cron="0 5 * * *", retain_days=365), encoder)
    assert ("compact", "0 5 * * *", worker.compact_retained) in worker.jobs()
    default = Worker(db_url, Settings(), encoder)
    assert ("compact", None, default.compact_retained) in default.jobs()  # off unless set
    assert worker.compact_retained().interactions == 1
    assert count(conn, "select count(*) from rerankdb.interactions") == 1
    status = conn.execute(
        "select last_compact_at is not null, compacted_before from rerankdb.status"
    ).fetchone()
    assert status[0] and abs(status[1] - (now - 365 * DAY)) < timedelta(minutes=5)
