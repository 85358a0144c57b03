"""The embedded server under concurrency: threads of one process and processes
that start it together share one server; a damaged state file stops nothing.

Each test keeps its own server in a temporary home and stops it at the end.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from rerankdb import Client, embedded, migrate
from rerankdb.errors import SchemaNotInstalledError
from tests.test_cli import cli

THREADS = 8


@pytest.fixture
def home() -> Iterator[Path]:
    """A fresh RERANKDB_HOME whose server, if any test starts it, is stopped afterwards.

    Not under pytest's tmp_path: running as root, the server runs as another
    user that must traverse the parent directories, and every pytest session
    that starts on this machine makes /tmp/pytest-of-root private again.
    """
    with tempfile.TemporaryDirectory(prefix="rerankdb-test-embedded-") as tmp:
        path = Path(tmp) / "home"
        try:
            yield path
        finally:
            embedded.stop(path)


def at_once(n: int, call: Callable[[int], object]) -> list[object]:
    """Run call(0..n-1) in n threads released together; each one's result or exception."""
    barrier = threading.Barrier(n)
    results: list[object] = [None] * n

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = call(i)
        except Exception as exc:  # collected, asserted on by the test
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_threads_making_clients_at_once_share_one_server(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RERANKDB_HOME", str(home))
    monkeypatch.delenv("RERANKDB_DATABASE_URL", raising=False)
    monkeypatch.delenv("RERANKDB_READ_URL", raising=False)

    def make(i: int) -> Client:
        return Client.embedded() if i % 2 else Client.from_env()

    # A fresh home: the server is made once, and every thread gets the clear
    # error of a database without the schema (not a start failure).
    results = at_once(THREADS, make)
    assert all(isinstance(r, SchemaNotInstalledError) for r in results), results

    url = embedded.start(home)
    migrate.upgrade(url)
    embedded.stop(home)
    # A stopped server that every thread starts at once: all get a client.
    results = at_once(THREADS, make)
    assert all(isinstance(r, Client) for r in results), results
    for client in results:
        assert isinstance(client, Client)
        assert client.status().items == 0
        client.close()
    assert not (embedded.pgdata_dir(home) / embedded.PIDS_FILE).exists(), "rerankdb keeps no pids file"


def test_processes_starting_the_server_together(home: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RERANKDB_")} | {
        "RERANKDB_HOME": str(home)
    }
    commands = [["db", "start"]] * 4 + [["db", "url"]] * 2
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "rerankdb.cli", *args],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for args in commands
    ]
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        outs.append((p.returncode, out, err))
    for args, (rc, out, err) in zip(commands, outs, strict=True):
        assert "Traceback" not in err, err
        if args[1] == "start":
            assert rc == 0 and "embedded PostgreSQL running" in out, err
        else:  # before the first start: "not running"; after: the URL
            assert (rc == 0 and "/rerankdb?" in out) or (rc == 1 and "not running" in err), (rc, out, err)
    assert embedded.running_url(home) is not None


@pytest.mark.parametrize("content", ["[4242, 17", ""])
def test_a_damaged_pids_file_is_removed_and_the_cli_works(home: Path, content: str) -> None:
    embedded.start(home)
    pids = embedded.pgdata_dir(home) / embedded.PIDS_FILE
    pids.write_bytes(content.encode("latin-1"))
    out = cli("db", "start", home=home)
    assert out.returncode == 0 and "Traceback" not in out.stderr, out.stderr
    assert f"removing the damaged {pids}" in out.stderr
    assert not pids.exists()
    out = cli("status", home=home)
    assert "Traceback" not in out.stderr and "JSONDecodeError" not in out.stderr, out.stderr
    embedded.stop(home)
    pids.write_bytes(content.encode("latin-1"))  # and a server that is not running starts too
    out = cli("db", "start", home=home)
    assert out.returncode == 0 and "Traceback" not in out.stderr, out.stderr
    assert not pids.exists()
