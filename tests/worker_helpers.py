"""Shared helpers for the worker's tests: writing rows, reading states, the rebuild check."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any

import numpy as np

from rerankdb import user_refresh
from rerankdb.config import Settings
from rerankdb.drain import DrainReport
from rerankdb.drain import drain as drain_all

CONTEXT_WEIGHT = 0.5  # the worker's default; the half-lives are rerankdb.settings'
DIM = 384
T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def drain(conn: Any, encoder: Any, context_weight: float = CONTEXT_WEIGHT) -> DrainReport:
    """All due work, as the worker does it."""
    return drain_all(conn, encoder, context_weight, DIM)


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
    """Interactions counted per user (a state that counts none, as a rebuild may leave, is no state)."""
    rows = conn.execute("select user_id, interactions from rerankdb.user_state where interactions > 0")
    return dict(rows.fetchall())


def status(conn: Any) -> dict[str, Any]:
    cur = conn.execute("select * from rerankdb.status")
    row = cur.fetchone()
    return dict(zip([c.name for c in cur.description], row, strict=True))


def assert_matches_rebuild(conn: Any, encoder: Any, context_weight: float = CONTEXT_WEIGHT) -> None:
    """Incremental vectors and counts equal a full rebuild from the log (max abs diff <= 1e-5)."""
    before, counts = user_vectors(conn), state_counts(conn)
    user_refresh.rebuild_users(conn, encoder, context_weight, DIM, user_refresh.all_users(conn))
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


def wait_for(predicate: Any, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


@contextmanager
def running(db_url: str, encoder: Any, settings: Settings | None = None, **kwargs: Any) -> Iterator[Any]:
    """A worker running in a thread that polls only every 60 s (unless ``settings`` say
    otherwise): anything faster is NOTIFY's doing."""
    from rerankdb.worker import Worker

    worker = Worker(db_url, settings or Settings(poll_seconds=60.0), encoder, **kwargs)
    thread = threading.Thread(target=worker.run, kwargs={"install_signals": False})
    thread.start()
    try:
        yield worker
    finally:
        worker.request_stop()
        thread.join(timeout=30)
    assert not thread.is_alive(), "the worker did not stop"
