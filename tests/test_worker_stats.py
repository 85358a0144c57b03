"""The workers' figures: their rows in rerankdb.workers, `rerankdb status`, the Prometheus endpoint."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from rerankdb import Client
from rerankdb.config import Settings
from rerankdb.errors import ConfigError
from rerankdb.worker_stats import WorkerStats
from tests.worker_helpers import T0, add_interactions, wait_for
from tests.worker_helpers import running as worker_running


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def running(db_url: str, encoder: Any, **settings: Any) -> Iterator[Any]:
    with worker_running(db_url, encoder, Settings(poll_seconds=60.0, **settings)) as worker:
        yield worker


def scrape(port: int) -> dict[str, float]:
    """The endpoint's samples without labels: {name: value}."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#") and "{" not in line:
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples


def scraped(port: int) -> dict[str, float]:
    """scrape(), or nothing while the endpoint is not up yet (the worker is starting)."""
    try:
        return scrape(port)
    except OSError:
        return {}


def folded_in_db(conn: Any) -> int:
    row = conn.execute("select coalesce(sum(interactions_folded), 0) from rerankdb.workers").fetchone()
    return int(row[0])


def test_a_worker_publishes_its_counters_to_the_database_and_to_prometheus(
    conn: Any, db_url: str, encoder: Any, catalog: Any
) -> None:
    port = free_port()
    with running(db_url, encoder, metrics_port=port) as worker:
        add_interactions(conn, [(1, 1, "view", None, None, T0), (2, 2, "like", None, None, T0)])
        assert wait_for(lambda: folded_in_db(conn) == 2)
        samples = scrape(port)
        assert worker.stats.metrics.server.server_address[0] == "127.0.0.1", "RERANKDB_METRICS_HOST's default"
        assert samples["rerankdb_interactions_folded_total"] == 2
        assert samples["rerankdb_items_embedded_total"] == 0
        assert samples["rerankdb_drain_seconds_count"] >= 1
        assert samples["rerankdb_pending_interactions"] == 0
        with Client(db_url) as client:
            st = client.status()
        assert len(st.workers) == 1
        row = st.workers[0]
        assert (row.worker_id, row.pid, row.interactions_folded) == (worker.stats.worker_id, os.getpid(), 2)
        assert row.drains >= 1 and row.last_drain_seconds is not None and row.busy_seconds > 0
    # After the stop the row stays (seen a moment ago) until a day has passed.
    assert folded_in_db(conn) == 2


def test_the_queue_gauges_show_the_backlog_and_its_age(conn: Any, db_url: str, catalog: Any) -> None:
    """A worker without an encoder leaves queued items alone: they are the backlog."""
    conn.execute("insert into rerankdb.items (item_id, content) values (50, 'waiting'), (51, 'waiting too')")
    conn.execute("update rerankdb.item_queue set enqueued_at = now() - interval '90 seconds'")
    port = free_port()
    with running(db_url, None, metrics_port=port):
        assert wait_for(lambda: scraped(port).get("rerankdb_pending_items") == 2)
        assert scrape(port)["rerankdb_item_lag_seconds"] >= 90


def test_status_lists_the_workers(conn: Any, db_url: str, encoder: Any, catalog: Any) -> None:
    with running(db_url, encoder):
        add_interactions(conn, [(1, 3, "view", None, None, T0)])
        assert wait_for(lambda: folded_in_db(conn) == 1)
    env = {**os.environ, "RERANKDB_DATABASE_URL": db_url}
    out = subprocess.run(
        [sys.executable, "-m", "rerankdb.cli", "status"], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert "workers                 1 seen in the last day" in out.stdout
    line = next(x for x in out.stdout.splitlines() if f":{os.getpid()}" in x)
    assert line.split()[4] == "1"  # host:pid, "N s ago", then folded


def test_rows_of_workers_gone_for_a_day_are_removed(conn: Any, db_url: str, encoder: Any) -> None:
    conn.execute(
        "insert into rerankdb.workers (worker_id, host, pid, started_at, seen_at)"
        " values ('old:1:0', 'old', 1, now() - interval '3 days', now() - interval '2 days')"
    )
    stats = WorkerStats()
    assert stats.publish(conn)
    rows = conn.execute("select worker_id from rerankdb.workers").fetchall()
    assert rows == [(stats.worker_id,)]
    assert not stats.publish(conn)  # a heartbeat is not due yet


def test_a_busy_port_or_a_missing_prometheus_client_is_a_clear_error(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        stats = WorkerStats()
        with pytest.raises(ConfigError, match=r"cannot serve metrics on 127\.0\.0\.1 port"):
            stats.serve(int(taken.getsockname()[1]))
    monkeypatch.setitem(sys.modules, "prometheus_client", None)  # as if not installed
    with pytest.raises(ConfigError, match=r"pip install 'rerankdb\[metrics\]'"):
        WorkerStats().serve(free_port())


@pytest.mark.parametrize(("host", "expected"), [(None, "127.0.0.1"), ("0.0.0.0", "0.0.0.0")])
def test_the_endpoint_listens_on_this_machine_only_unless_told(host: str | None, expected: str) -> None:
    env = {"RERANKDB_METRICS_PORT": str(free_port())} | ({"RERANKDB_METRICS_HOST": host} if host else {})
    settings = Settings.from_env(env)
    assert settings.metrics_port is not None
    stats = WorkerStats()
    stats.serve(settings.metrics_port, settings.metrics_host)
    try:
        assert stats.metrics is not None
        assert stats.metrics.server.server_address[0] == expected
        assert (
            "rerankdb_interactions_folded_total 0.0"
            in urllib.request.urlopen(f"http://127.0.0.1:{settings.metrics_port}/metrics", timeout=5)
            .read()
            .decode()
        )
    finally:
        stats.close()


def test_worker_once_writes_its_row(conn: Any, db_url: str, catalog: Any) -> None:
    add_interactions(conn, [(1, 1, "view", None, None, T0), (2, 2, "like", None, None, T0)])
    env = {k: v for k, v in os.environ.items() if not k.startswith("RERANKDB_")}
    env["RERANKDB_DATABASE_URL"] = db_url
    out = subprocess.run(
        [sys.executable, "-m", "rerankdb.cli", "worker", "--once", "--no-encoder"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "2 interactions folded" in out.stdout
    rows = conn.execute("select pid, interactions_folded, drains from rerankdb.workers").fetchall()
    assert len(rows) == 1 and rows[0][0] != os.getpid() and rows[0][1:] == (2, 1), rows
