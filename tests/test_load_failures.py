"""Loads that fail part way: what they say they committed is what is in the database.

Two loads at once, a server stopped mid-load, an index build that fails after
the rows are committed.  The server-stop tests run their own embedded server
(the session's is shared by every test).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest

from rerankdb import Client, db, embedded, migrate
from rerankdb.cli import main
from rerankdb.load import LoadFailedError
from tests.conftest import FAST_CONF
from tests.test_load import DIM, counts, index_valid, items, write_jsonl


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


@pytest.fixture
def own_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    """A server of this test's own, to stop mid-load (the session's serves every test)."""
    home = Path(tmp_path_factory.mktemp("stopped-server"))
    url = embedded.start(home, extra_conf=FAST_CONF)
    migrate.upgrade(url, dim=DIM)
    yield home, url
    embedded.stop(home)


def _stop_when(home: Path, url: str, query: str) -> threading.Thread:
    """Stop the server once a session of it runs ``query`` (a LIKE pattern) waiting for a lock."""

    def stop() -> None:
        with db.connect(url, autocommit=True) as watch:
            wait_for(
                lambda: (
                    watch.execute(
                        "select count(*) from pg_stat_activity where query ilike %s and wait_event_type = 'Lock'",
                        (query,),
                    ).fetchone()[0]  # type: ignore[index]
                    > 0
                )
            )
        embedded.stop(home)

    t = threading.Thread(target=stop)
    t.start()
    return t


def test_a_server_stopped_mid_load_says_what_was_committed(
    own_server: tuple[Path, str],
    tmp_path: Path,
    rng: np.random.Generator,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    home, url = own_server
    path = write_jsonl(tmp_path / "a.jsonl", items(20, rng))
    # Stopped before the commit (the file read, nothing written yet): it says so.
    with (
        Client(url) as client,
        pytest.raises(LoadFailedError, match=r"^a\.jsonl: nothing was loaded: ") as err,
    ):
        client.load_items(path, index="rebuild", progress=lambda n: embedded.stop(home))
    assert err.value.committed is None
    url = embedded.start(home)
    with db.connect(url, autocommit=True) as conn:
        assert counts(conn) == (0, 0, 0)
        assert index_valid(conn) is True
        # Stopped during the index build, after the commit: the rows are there, and it says
        # so, and what is left to do.  (A transaction holding a lock on the table holds the
        # build in its first wait, for the stop to find it there.)
        conn.execute("drop index rerankdb.item_vectors_embedding_hnsw")
        blocker = db.connect(url)
        blocker.execute("lock table rerankdb.item_vectors in row exclusive mode")
    monkeypatch.setenv("RERANKDB_DATABASE_URL", url)
    stopper = _stop_when(home, url, "create index concurrently%")
    try:
        assert main(["load", "items", str(path)]) == 1
    finally:
        stopper.join()
        blocker.close()
    err_text = capsys.readouterr().err
    assert (
        "rerankdb: a.jsonl: 20 items (20 new or changed, 20 with embeddings, 0 queued for the worker's "
        "encoder) committed; but the text index build failed (" in err_text
    )
    assert f"`rerankdb load items {path} --index rebuild` as the owner" in err_text
    url = embedded.start(home)
    monkeypatch.setenv("RERANKDB_DATABASE_URL", url)
    with db.connect(url, autocommit=True) as conn:
        assert counts(conn) == (20, 20, 0)
        assert index_valid(conn) is False
    # `rerankdb status` warns of it; the next load (any, by the owner) builds it.
    assert main(["status"]) == 0
    out = capsys.readouterr()
    assert "warning: the text index is invalid" in out.out
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    assert main(["load", "items", str(empty)]) == 0
    assert "text index built once" in capsys.readouterr().out
    with db.connect(url, autocommit=True) as conn:
        assert index_valid(conn) is True
    assert main(["status"]) == 0
    assert "warning" not in capsys.readouterr().out
