"""Reads on a real streaming replica: pg_basebackup -R of an embedded primary, the worker on the primary.

The primary and its standby are the embedded server's own binaries, in a
temporary directory of this module (whatever RERANKDB_DATABASE_URL says: a
replica needs a server this test may copy).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from rerankdb import Client, Interaction, db, embedded, migrate
from rerankdb.errors import ConfigError, DatabaseUnavailableError, SchemaNotInstalledError
from tests.conftest import FAST_CONF
from tests.worker_helpers import CATALOG, add_items, running, wait_for


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str, Path, str]]:
    """(primary home, its URL, replica home, its URL): rerankdb at head on the primary, streamed to the replica."""
    base = Path(tmp_path_factory.mktemp("replication"))
    primary_home, replica_home = base / "primary", base / "replica"
    primary = embedded.start(primary_home, extra_conf=FAST_CONF)
    migrate.upgrade(primary, dim=384)
    replica = embedded.start_replica(primary_home, replica_home)
    yield primary_home, primary, replica_home, replica
    embedded.stop(replica_home)
    embedded.stop(primary_home)


@pytest.fixture(scope="module")
def catalog(servers: tuple[Path, str, Path, str], encoder: Any) -> dict[int, str]:
    """The six test items, embedded by a worker on the primary."""
    _, primary, _, _ = servers
    with db.connect(primary, autocommit=True) as conn:
        add_items(conn, CATALOG)
    with running_worker(primary, encoder):
        assert wait_until(lambda: _count(primary, "item_vectors") == len(CATALOG))
    return CATALOG


def _count(url: str, table: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(f"select count(*) from rerankdb.{table}").fetchone()
    assert row is not None
    return int(row[0])


def wait_until(predicate: Any) -> bool:
    return wait_for(predicate, timeout=30.0)


def running_worker(url: str, encoder: Any) -> Any:
    return running(url, encoder)  # NOTIFY wakes it


def test_the_replica_is_a_read_only_standby(servers: tuple[Path, str, Path, str]) -> None:
    _, _, _, replica = servers
    with psycopg.connect(replica) as conn:
        assert conn.execute("select pg_is_in_recovery()").fetchone() == (True,)
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            conn.execute("insert into rerankdb.items (item_id, content) values (99, 'x')")


def test_a_new_interaction_reaches_rerank_on_the_replica(
    servers: tuple[Path, str, Path, str], catalog: dict[int, str], encoder: Any
) -> None:
    """Worker on the primary, reads on the replica: the interaction is folded on the primary
    and the new user vector streams to the standby, where rerank sees it."""
    _, primary, _, replica = servers
    candidates = list(catalog)
    with Client(primary, read_url=replica) as client, running_worker(primary, encoder):
        user = 5001
        assert [r.score for r in client.rerank(user, candidates)] == [None] * 6  # no vector yet
        client.record_interactions([Interaction(user, 2, "purchase")])  # Mars, on the primary

        def mars_first() -> bool:
            got = client.rerank(user, candidates)
            return got[0].item_id == 2 and got[0].score is not None

        assert wait_until(mars_first)
        # The read really ran on the standby: a client of the replica alone sees the same.
        with Client(replica) as on_replica:
            assert [r.item_id for r in on_replica.rerank(user, candidates)] == [
                r.item_id for r in client.rerank(user, candidates)
            ]
        assert wait_until(lambda: client.read_lag() == 0)


def test_every_read_function_runs_on_the_standby(
    servers: tuple[Path, str, Path, str], catalog: dict[int, str], encoder: Any
) -> None:
    _, primary, _, replica = servers
    with Client(primary) as writer, running_worker(primary, encoder):
        writer.record_interactions([Interaction(5002, 1, "view"), Interaction(5002, 6, "like")])
        assert wait_until(lambda: _count(replica, "user_vectors") >= 1 and _has_vector(replica, 5002))
    with Client(replica) as reader:  # nothing but the standby: any write would fail
        assert len(reader.rerank(5002, [1, 2, 3], diversity=0.3, context_items=[4], exclude_seen=True)) == 2
        assert len(reader.rerank_scored(5002, [1, 2, 3], [0.1, 0.5, 0.9])) == 3
        assert reader.recommend(5002, 3)
        assert reader.similar_items(1, 3)
        assert reader.explain(5002, [2])
        assert reader.status().user_vectors >= 1


def _has_vector(url: str, user: int) -> bool:
    with psycopg.connect(url) as conn:
        return (
            conn.execute("select 1 from rerankdb.user_vectors where user_id = %s", (user,)).fetchone()
            is not None
        )


def test_reads_go_to_the_primary_while_the_replica_is_down(
    servers: tuple[Path, str, Path, str], catalog: dict[int, str]
) -> None:
    primary_home, primary, replica_home, replica = servers
    with Client(primary, read_url=replica, timeout=2.0) as client:
        want = client.rerank(1, [1, 2, 3])
        embedded.stop(replica_home)
        try:
            assert client.rerank(1, [1, 2, 3]) == want  # served by the primary
            assert client._read_down_until > time.monotonic()
        finally:
            embedded.start_replica(primary_home, replica_home)  # starts the same standby again
        client._read_down_until = 0.0  # as if READ_RETRY_SECONDS had passed
        assert client.rerank(1, [1, 2, 3]) == want
        assert client._read_down_until == 0.0  # the replica served it


def test_a_read_url_that_is_not_a_copy_of_the_primary_is_refused(
    servers: tuple[Path, str, Path, str], server_url: str, db_url: str, empty_db_url: str
) -> None:
    _, primary, _, _ = servers
    other_dim = db.create_database(server_url, f"rerankdb_test_dim8_{os.getpid()}")
    try:
        migrate.upgrade(other_dim, dim=8)
        with pytest.raises(ConfigError, match=r"read server .* 8-d vectors, the primary 384-d"):
            Client(primary, read_url=other_dim)
    finally:
        db.drop_database(server_url, f"rerankdb_test_dim8_{os.getpid()}")
    with pytest.raises(SchemaNotInstalledError, match="read server"):
        Client(primary, read_url=empty_db_url)
    with pytest.raises(DatabaseUnavailableError, match="read server"):
        Client(primary, read_url="postgresql://nobody@/rerankdb?host=/nonexistent-socket-dir")
    with Client(db_url, read_url=db_url) as same:  # the primary itself: allowed, no lag
        assert same.read_lag() == 0


def test_cli_reads_from_rerankdb_read_url(
    servers: tuple[Path, str, Path, str], catalog: dict[int, str]
) -> None:
    _, primary, _, replica = servers
    env = {**os.environ, "RERANKDB_DATABASE_URL": primary, "RERANKDB_READ_URL": replica}
    run = [sys.executable, "-m", "rerankdb.cli"]
    out = subprocess.run([*run, "rerank", "1", "1", "2", "3"], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "rank" in out.stdout
    status = subprocess.run([*run, "status"], env=env, capture_output=True, text=True)
    assert status.returncode == 0, status.stderr
    assert "read server     RERANKDB_READ_URL, 0 bytes of WAL behind" in status.stdout
