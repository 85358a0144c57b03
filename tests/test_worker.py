"""The running worker: NOTIFY wake-ups, lost connections, failing batches, the CLI, cron jobs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from rerankdb.config import Settings
from rerankdb.errors import DimensionMismatchError
from rerankdb.worker import Worker
from tests.worker_helpers import (
    T0,
    add_interactions,
    add_items,
    running,
    state_counts,
    status,
    user_vectors,
    wait_for,
)


@pytest.fixture
def running_worker(db_url: str, encoder: Any, catalog: Any) -> Iterator[Worker]:
    with running(db_url, encoder) as worker:
        yield worker


def test_notify_wakes_the_worker(conn: Any, running_worker: Worker) -> None:
    time.sleep(0.5)  # let it finish its start-up drain and sleep
    add_interactions(conn, [(11, 1, "like", None, None, T0)])
    assert wait_for(lambda: 11 in user_vectors(conn), timeout=10), "not woken by NOTIFY"


def test_worker_survives_lost_connections(db_url: str, conn: Any, running_worker: Worker) -> None:
    time.sleep(0.5)
    killed = conn.execute(
        "select count(pg_terminate_backend(pid)) from pg_stat_activity"
        " where datname = current_database() and pid <> pg_backend_pid()"
    ).fetchone()[0]
    assert killed >= 1  # at least its LISTEN connection
    add_interactions(conn, [(12, 2, "like", None, None, T0)])
    assert wait_for(lambda: 12 in user_vectors(conn), timeout=20), "worker did not recover"


def test_worker_survives_a_failing_batch(db_url: str, conn: Any, encoder: Any, catalog: Any) -> None:
    """Any error in a batch rolls it back and is logged; the row it failed on is set aside
    (visible in rerankdb.status), other rows go on, and it is retried once due."""
    failures = []

    def fail_on_user_13() -> None:
        if not failures and conn.execute("select 1 from rerankdb.interactions where user_id = 13").fetchone():
            failures.append(1)
            raise RuntimeError("injected failure")

    with running(db_url, encoder, before_commit=fail_on_user_13):
        time.sleep(0.5)
        add_interactions(conn, [(13, 3, "like", None, None, T0)])
        assert wait_for(lambda: status(conn)["failed_interactions"] == 1, timeout=20), "not set aside"
        assert "RuntimeError: injected failure" in status(conn)["last_interaction_error"]
        add_interactions(conn, [(14, 2, "like", None, None, T0)])
        assert wait_for(lambda: 14 in user_vectors(conn), timeout=20), "another user was held up"
        assert 13 not in user_vectors(conn)
        conn.execute("update rerankdb.interaction_queue set not_before = now()")  # its backoff is over
        conn.execute("select pg_notify('rerankdb_work', 'test')")
        assert wait_for(lambda: 13 in user_vectors(conn), timeout=20), "worker did not retry"
    assert failures == [1]
    assert state_counts(conn) == {13: 1, 14: 1}, "the failed attempt counted nothing"
    assert status(conn)["failed_interactions"] == 0


def test_encoder_dimension_is_checked_before_anything_is_written(empty_db_url: str, encoder: Any) -> None:
    from rerankdb import migrate

    migrate.upgrade(empty_db_url, dim=16)
    with pytest.raises(DimensionMismatchError, match=r"dimension 384.*installed with dimension 16"):
        Worker(empty_db_url, Settings(), encoder)


def test_cli_worker_once_rebuild_status_and_sigterm(db_url: str, conn: Any) -> None:
    add_items(conn, {1: "space adventure", 2: "romance in Paris"})
    add_interactions(conn, [(1, 1, "like", None, None, T0), (1, 2, "skip", None, None, T0)])
    env = {k: v for k, v in os.environ.items() if not k.startswith("RERANKDB_")}
    env["RERANKDB_DATABASE_URL"] = db_url

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "rerankdb.cli", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )

    out = cli("worker", "--once")
    assert out.returncode == 0, out.stderr
    assert "2 items embedded" in out.stdout and "2 interactions folded" in out.stdout
    out = cli("rebuild")
    assert out.returncode == 0, out.stderr
    assert "rebuilt user vectors from 2 interactions" in out.stdout
    out = cli("status")
    assert (
        "pending interactions    0" in out.stdout and "model                   all-MiniLM-L6-v2" in out.stdout
    )

    proc = subprocess.Popen(
        [sys.executable, "-m", "rerankdb.cli", "worker"], env=env, stderr=subprocess.PIPE, text=True
    )
    try:
        assert wait_for(
            lambda: (
                conn.execute(
                    "select count(*) from pg_stat_activity where query ilike 'listen rerankdb_work%%'"
                ).fetchone()[0]
                > 0
            ),
            timeout=120,
        ), "worker never started listening"
        time.sleep(2.5)  # a few runs of the 1 s poll job
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.stderr is not None
    stderr = proc.stderr.read()
    assert "worker stopped" in stderr
    assert "apscheduler" not in stderr, "APScheduler's INFO line per poll is silenced"


def test_scheduled_jobs_log_failures_and_keep_the_worker(
    db_url: str, conn: Any, catalog: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """The cron jobs (rebuild, train) run through one wrapper that never lets a failure escape."""
    worker = Worker(db_url, Settings(), None)
    add_interactions(conn, [(21, 1, "like", None, None, T0)])
    worker._scheduled("rebuild", worker.rebuild)
    assert state_counts(conn) == {21: 1}

    def broken() -> None:
        raise RuntimeError("boom")

    worker._scheduled("train", broken)
    assert "scheduled train failed" in caplog.text
