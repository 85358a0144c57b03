"""Loads that fail part way: what they say they committed is what is in the database.

Two loads at once, a server stopped mid-load, an index build that fails after
the rows are committed.  The server-stop tests run their own embedded server
(the session's is shared by every test).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import psycopg

from rerankdb import Client
from tests.test_load import counts, index_valid, items, write_jsonl


def wait_for(check: Callable[[], bool]) -> None:
    from tests.worker_helpers import wait_for as wait

    assert wait(check, timeout=60)


def test_a_load_waiting_for_the_index_lock_does_not_deadlock_the_build(
    client: Client, conn: psycopg.Connection[Any], tmp_path: Path, rng: np.random.Generator
) -> None:
    """A load waits for another's index build without holding a snapshot: the build
    (which waits for every older snapshot) finishes, then the waiting load goes on."""
    conn.execute("drop index rerankdb.item_vectors_embedding_hnsw")
    conn.execute("set deadlock_timeout = '100ms'")
    # This connection plays the first load: it holds the build lock and builds.
    conn.execute("select pg_advisory_lock(hashtext('rerankdb.item_vectors_embedding_hnsw'))")
    result: list[Any] = []

    def second() -> None:
        try:
            result.append(
                client.load_items(write_jsonl(tmp_path / "b.jsonl", items(20, rng)), index="rebuild")
            )
        except BaseException as exc:
            result.append(exc)

    t = threading.Thread(target=second)
    t.start()
    try:
        wait_for(
            lambda: (
                conn.execute(
                    "select count(*) from pg_stat_activity where datname = current_database()"
                    " and pid <> pg_backend_pid() and query like %s",
                    ("%advisory_lock(hashtext('rerankdb.item_vectors_embedding_hnsw'%",),
                ).fetchone()[0]  # type: ignore[index]
                > 0
            )
        )
        conn.execute(
            "create index concurrently item_vectors_embedding_hnsw on rerankdb.item_vectors"
            " using hnsw (embedding vector_ip_ops)"
        )
    finally:
        conn.execute("select pg_advisory_unlock(hashtext('rerankdb.item_vectors_embedding_hnsw'))")
        t.join()
    assert [(r.rows, r.index) for r in result] == [(20, "rebuilt")]
    assert index_valid(conn) is True
    assert counts(conn) == (20, 20, 0)
