"""The worker against a real database: items, users, exactly-once, faults."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from rerankdb import db, item_refresh, refresh
from rerankdb.config import Settings
from rerankdb.errors import DimensionMismatchError
from rerankdb.worker import Worker

PARAMS = refresh.FoldParams.from_days(30.0, 0.5)
DIM = 384
T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def drain(conn: Any, encoder: Any, params: refresh.FoldParams = PARAMS) -> refresh.DrainReport:
    return refresh.drain(conn, encoder, params, DIM)


def add_items(conn: Any, items: dict[int, str]) -> None:
    with conn.cursor() as cur:
        cur.executemany("insert into rerankdb.items (item_id, content) values (%s, %s)", list(items.items()))


def add_interactions(conn: Any, rows: list[tuple[Any, ...]]) -> None:
    """rows: (user_id, item_id, kind, weight, context, occurred_at)."""
    with conn.cursor() as cur:
        cur.executemany(
            "insert into rerankdb.interactions (user_id, item_id, kind, weight, context, occurred_at)"
            " values (%s, %s, %s, %s, %s, %s)",
            rows,
        )


def user_vectors(conn: Any) -> dict[int, np.ndarray]:
    rows = conn.execute("select user_id, embedding from rerankdb.user_vectors").fetchall()
    return {u: np.asarray(v.to_numpy(), dtype=np.float64) for u, v in rows}


def state_counts(conn: Any) -> dict[int, int]:
    return dict(conn.execute("select user_id, interactions from rerankdb.user_state").fetchall())


def status(conn: Any) -> dict[str, Any]:
    cur = conn.execute("select * from rerankdb.status")
    row = cur.fetchone()
    return dict(zip([c.name for c in cur.description], row, strict=True))


def assert_matches_rebuild(conn: Any, encoder: Any, params: refresh.FoldParams = PARAMS) -> None:
    """Incremental vectors and counts equal a full rebuild from the log (max abs diff <= 1e-5)."""
    before, counts = user_vectors(conn), state_counts(conn)
    refresh.rebuild_users(conn, encoder, params, DIM, refresh.all_users(conn))
    after = user_vectors(conn)
    assert before.keys() == after.keys()
    for u in before:
        assert np.abs(before[u] - after[u]).max() <= 1e-5, u
    assert state_counts(conn) == counts


CATALOG = {
    1: "A space opera about a rebellion against a galactic empire",
    2: "Astronauts stranded on Mars grow potatoes to survive",
    3: "A romantic comedy set in Paris cafes",
    4: "Two strangers fall in love on a train across Europe",
    5: "A documentary about deep sea creatures",
    6: "A heist thriller in a Las Vegas casino",
}


@pytest.fixture
def catalog(conn: Any, encoder: Any) -> dict[int, np.ndarray]:
    add_items(conn, CATALOG)
    report = drain(conn, encoder)
    assert report.items_embedded == len(CATALOG)
    return {i: encoder.encode([t])[0] for i, t in CATALOG.items()}


# --- items --------------------------------------------------------------------------


def test_items_are_embedded_with_hash_and_model(
    conn: Any, encoder: Any, catalog: dict[int, np.ndarray]
) -> None:
    rows = conn.execute(
        "select item_id, embedding, content_sha256, model from rerankdb.item_vectors"
    ).fetchall()
    assert len(rows) == len(CATALOG)
    for item_id, emb, digest, model in rows:
        assert float(np.dot(emb.to_numpy(), catalog[item_id])) == pytest.approx(1.0, abs=1e-5)
        assert bytes(digest) == item_refresh.content_hash(CATALOG[item_id])
        assert model == encoder.name
    assert status(conn)["pending_items"] == 0


def test_unchanged_text_costs_nothing_and_changed_text_is_reembedded(
    conn: Any, encoder: Any, catalog: dict[int, np.ndarray]
) -> None:
    conn.execute("update rerankdb.items set metadata = '{\"x\": 1}' where item_id = 1")
    conn.execute("update rerankdb.items set content = content where item_id = 2")
    assert status(conn)["pending_items"] == 0, "no text change: nothing queued"
    item_refresh.requeue_all_items(conn)
    report = drain(conn, encoder)
    assert (report.items_embedded, report.items_unchanged) == (0, len(CATALOG)), "hash match: no encoding"

    conn.execute("update rerankdb.items set content = 'A cooking show about pasta' where item_id = 3")
    report = drain(conn, encoder)
    assert report.items_embedded == 1
    emb = conn.execute("select embedding from rerankdb.item_vectors where item_id = 3").fetchone()[0]
    assert float(np.dot(emb.to_numpy(), encoder.encode(["A cooking show about pasta"])[0])) > 0.9999


def test_deleted_items_lose_their_vectors(conn: Any, encoder: Any, catalog: dict[int, np.ndarray]) -> None:
    conn.execute("delete from rerankdb.items where item_id in (1, 2)")
    left = conn.execute("select item_id from rerankdb.item_vectors order by 1").fetchall()
    assert [r[0] for r in left] == [3, 4, 5, 6]


class FailingEncoder:
    """The real encoder, except that it raises on texts containing BOOM (fault injection)."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.name, self.dim = inner, inner.name, inner.dim

    def encode(self, texts: list[str]) -> np.ndarray:
        if any("BOOM" in t for t in texts):
            raise RuntimeError("tokenizer exploded")
        return np.asarray(self.inner.encode(texts))


def test_poison_items_are_recorded_retried_with_backoff_and_block_nothing(conn: Any, encoder: Any) -> None:
    add_items(conn, {1: "fine text", 2: "   ", 3: "BOOM goes this one", 4: "also fine"})
    report = drain(conn, FailingEncoder(encoder))
    assert (report.items_embedded, report.items_failed) == (2, 2)
    rows = conn.execute(
        "select item_id, attempts, last_error, not_before > now() from rerankdb.item_queue order by 1"
    ).fetchall()
    assert rows[0][:2] == (2, 1) and "empty content" in rows[0][2] and rows[0][3]
    assert rows[1][:2] == (3, 1) and "tokenizer exploded" in rows[1][2] and rows[1][3]
    st = status(conn)
    assert (st["failed_items"], st["pending_items"]) == (2, 0)

    assert drain(conn, FailingEncoder(encoder)).items_failed == 0, "backing off: not retried at once"
    conn.execute("update rerankdb.item_queue set not_before = now() - interval '1 second'")
    drain(conn, FailingEncoder(encoder))
    assert conn.execute("select attempts from rerankdb.item_queue order by 1").fetchall() == [(2,), (2,)]

    conn.execute("update rerankdb.items set content = 'fixed now' where item_id = 3")  # re-queued fresh
    drain(conn, encoder)
    assert conn.execute("select item_id from rerankdb.item_queue").fetchall() == [(2,)]


# --- users ------------------------------------------------------------------------


def test_user_vector_is_the_decayed_weighted_sum(
    conn: Any, encoder: Any, catalog: dict[int, np.ndarray]
) -> None:
    day = timedelta(days=1)
    add_interactions(
        conn,
        [
            (7, 1, "view", None, None, T0),
            (7, 2, "purchase", None, None, T0 + 30 * day),  # one half-life later
            (7, 3, "dislike", None, None, T0 + 30 * day),
            (7, 4, "view", 4.0, "love on a train", T0 + 15 * day),
        ],
    )
    report = drain(conn, encoder)
    assert report.interactions_folded == 4
    ctx = encoder.encode(["love on a train"])[0]
    want = (
        1.0 * 0.5 * catalog[1]
        + 3.0 * catalog[2]
        - 1.0 * catalog[3]
        + 4.0 * 2**-0.5 * (catalog[4] + 0.5 * ctx)
    )
    got = user_vectors(conn)[7]
    np.testing.assert_allclose(got, want / np.linalg.norm(want), atol=1e-6)
    assert state_counts(conn) == {7: 4}
    # and rerank now personalizes with it
    ranked = conn.execute("select item_id from rerankdb.rerank(7, array[3, 6, 2, 5])").fetchall()
    assert [r[0] for r in ranked] == sorted([3, 6, 2, 5], key=lambda i: -float(got @ catalog[i]))
    assert ranked[0][0] == 2


def test_incremental_equals_rebuild(conn: Any, encoder: Any, catalog: dict[int, np.ndarray]) -> None:
    rng = np.random.default_rng(3)
    kinds = ["view", "click", "like", "purchase", "skip", "dislike"]
    for _ in range(5):  # five arrivals, each folded incrementally
        rows = [
            (
                int(rng.integers(1, 6)),
                int(rng.integers(1, 7)),
                str(rng.choice(kinds)),
                None if rng.random() < 0.7 else float(rng.uniform(-2, 5)),
                None if rng.random() < 0.8 else str(rng.choice(["space", "love", "casino"])),
                T0 + timedelta(hours=float(rng.uniform(0, 2000))),
            )
            for _ in range(40)
        ]
        add_interactions(conn, rows)
        drain(conn, encoder)
    assert sum(state_counts(conn).values()) == 200
    assert_matches_rebuild(conn, encoder)


def test_no_decay_setting(conn: Any, encoder: Any, catalog: dict[int, np.ndarray]) -> None:
    flat = refresh.FoldParams.from_days(None, 0.0)
    add_interactions(
        conn, [(1, 1, "view", None, None, T0), (1, 2, "view", None, None, T0 + timedelta(days=900))]
    )
    drain(conn, encoder, flat)
    want = catalog[1] + catalog[2]
    np.testing.assert_allclose(user_vectors(conn)[1], want / np.linalg.norm(want), atol=1e-6)


def test_cancelled_user_has_no_vector(conn: Any, encoder: Any, catalog: dict[int, np.ndarray]) -> None:
    add_interactions(conn, [(1, 1, "like", None, None, T0), (1, 1, "like", -2.0, None, T0)])
    drain(conn, encoder)
    assert 1 not in user_vectors(conn)
    assert conn.execute("select * from rerankdb.rerank(1, array[2, 1])").fetchall() == [
        (2, None, 1),
        (1, None, 2),
    ]


def test_interaction_before_its_item_is_deferred_then_counted(conn: Any, encoder: Any, catalog: Any) -> None:
    add_interactions(conn, [(9, 100, "like", None, None, T0), (9, 1, "view", None, None, T0)])
    report = drain(conn, encoder)
    assert (report.interactions_folded, report.interactions_deferred) == (1, 1)
    assert status(conn)["deferred_interactions"] == 1
    add_items(conn, {100: "Wizards attend a school of magic"})
    report = drain(conn, encoder)
    assert (report.items_embedded, report.interactions_folded) == (1, 1)
    assert state_counts(conn) == {9: 2}
    assert status(conn)["deferred_interactions"] == 0
    assert_matches_rebuild(conn, encoder)


def test_out_of_order_commits_are_neither_missed_nor_doubled(
    db_url: str, conn: Any, encoder: Any, catalog: Any
) -> None:
    with db.connect(db_url) as slow:  # a transaction that takes the lower id but commits last
        add_interactions(slow, [(5, 1, "view", None, None, T0)])
        add_interactions(conn, [(5, 2, "view", None, None, T0)])  # higher id, committed first
        assert drain(conn, encoder).interactions_folded == 1
        slow.commit()
    assert drain(conn, encoder).interactions_folded == 1
    assert drain(conn, encoder).interactions_folded == 0
    assert state_counts(conn) == {5: 2}
    assert_matches_rebuild(conn, encoder)


def test_two_workers_at_once_count_everything_once(
    db_url: str, conn: Any, encoder: Any, catalog: Any
) -> None:
    rng = np.random.default_rng(5)
    stop = threading.Event()
    errors: list[BaseException] = []

    def work() -> None:
        with db.connect(db_url, autocommit=True) as c:
            while not stop.is_set():
                try:
                    refresh.refresh_users(c, encoder, PARAMS, DIM, limit=7)
                except BaseException as exc:  # surfaced below
                    errors.append(exc)
                    return

    workers = [threading.Thread(target=work) for _ in range(2)]
    for w in workers:
        w.start()
    for _ in range(30):  # inserts racing the two workers
        add_interactions(
            conn,
            [(int(rng.integers(1, 4)), int(rng.integers(1, 7)), "click", None, None, T0) for _ in range(10)],
        )
    time.sleep(0.5)
    stop.set()
    for w in workers:
        w.join()
    assert not errors, errors
    drain(conn, encoder)
    assert sum(state_counts(conn).values()) == 300
    assert_matches_rebuild(conn, encoder)


KILL_SCRIPT = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from rerankdb import db, refresh
    from rerankdb.encoder import TransformerEncoder

    def hang():
        Path(sys.argv[2]).write_text("in batch")
        time.sleep(600)

    refresh.before_commit = hang
    with db.connect(sys.argv[1], autocommit=True) as conn:
        refresh.refresh_users(conn, None, refresh.FoldParams.from_days(30.0, 0.5), 384)
    """
)


def test_worker_killed_mid_batch_loses_and_doubles_nothing(
    db_url: str, conn: Any, encoder: Any, catalog: Any, tmp_path: Path
) -> None:
    add_interactions(conn, [(u, i, "like", None, None, T0) for u in (1, 2) for i in (1, 2, 3)])
    marker = tmp_path / "marker"
    proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, db_url, str(marker)])
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert proc.poll() is None and time.monotonic() < deadline, "the worker never reached its batch"
            time.sleep(0.05)
        # Its batch is computed and written, not committed: the rows stay claimed.
        assert refresh.refresh_users(conn, None, PARAMS, DIM).folded == 0
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    deadline = time.monotonic() + 30
    folded = 0
    while folded == 0 and time.monotonic() < deadline:  # until the server notices the dead session
        folded = drain(conn, encoder).interactions_folded
        time.sleep(0.1)
    assert folded == 6
    assert state_counts(conn) == {1: 3, 2: 3}
    assert_matches_rebuild(conn, encoder)


def test_rebuild_requeues_interactions_whose_item_lost_its_vector(
    conn: Any, encoder: Any, catalog: Any
) -> None:
    add_interactions(conn, [(1, 1, "like", None, None, T0), (1, 2, "like", None, None, T0)])
    drain(conn, encoder)
    conn.execute("delete from rerankdb.item_vectors where item_id = 2")
    assert refresh.rebuild_users(conn, encoder, PARAMS, DIM, [1]) == 1
    assert status(conn)["deferred_interactions"] == 1
    conn.execute("update rerankdb.items set content = content || '!' where item_id = 2")
    drain(conn, encoder)
    assert state_counts(conn) == {1: 2}
    assert_matches_rebuild(conn, encoder)


# --- the running worker ------------------------------------------------------------


def wait_for(predicate: Any, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


@pytest.fixture
def running_worker(db_url: str, encoder: Any, catalog: Any) -> Any:
    """A worker that polls only every 60 s: anything faster is NOTIFY's doing."""
    worker = Worker(db_url, Settings(poll_seconds=60.0), encoder)
    thread = threading.Thread(target=worker.run, kwargs={"install_signals": False})
    thread.start()
    yield worker
    worker.request_stop()
    thread.join(timeout=30)
    assert not thread.is_alive(), "the worker did not stop"


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


def test_worker_survives_a_failing_batch(conn: Any, running_worker: Worker) -> None:
    """Any error in a batch rolls it back, is logged, and the worker retries."""
    failures = []

    def fail_once() -> None:
        if not failures:
            failures.append(1)
            raise RuntimeError("injected failure")

    refresh.before_commit = fail_once
    try:
        time.sleep(0.5)
        add_interactions(conn, [(13, 3, "like", None, None, T0)])
        assert wait_for(lambda: 13 in user_vectors(conn), timeout=20), "worker did not retry"
    finally:
        refresh.before_commit = None
    assert failures == [1]
    assert state_counts(conn)[13] == 1, "the failed attempt counted nothing"


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
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.stderr is not None and "worker stopped" in proc.stderr.read()


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
