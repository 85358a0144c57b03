"""The worker's own figures, for a fleet: its row in ``rerankdb.workers`` and a Prometheus endpoint.

Each worker process counts what its drains did since it started
(interactions folded, items embedded, rows set aside, users rebuilt, time
busy) and publishes the totals to its row of ``rerankdb.workers`` after each
drain that did some work and at least every HEARTBEAT_SECONDS otherwise:
``rerankdb status`` lists them, with when each was last seen.  With a
metrics port (``RERANKDB_METRICS_PORT``, needs ``prometheus_client``; on
127.0.0.1 unless ``RERANKDB_METRICS_HOST`` says otherwise), the
same counters, the drain latency and the queues' backlog and lag are served
for Prometheus.  Counting is at least as exact as the drains it follows: a
crash between a batch's commit and the next publish loses that batch's
counts from the row, never any work.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import asdict, dataclass
from typing import Any

import psycopg

from rerankdb.drain import DrainReport
from rerankdb.errors import ConfigError
from rerankdb.sqlfiles import queries

Q = queries("worker_stats")
HEARTBEAT_SECONDS = 5.0


@dataclass
class Totals:
    """What one worker process did since it started."""

    interactions_folded: int = 0
    items_embedded: int = 0
    interactions_set_aside: int = 0
    items_failed: int = 0
    users_rebuilt: int = 0
    drains: int = 0  # drains that did some work
    busy_seconds: float = 0.0
    last_drain_seconds: float | None = None


def did_work(report: DrainReport) -> bool:
    return bool(
        report.items_embedded
        + report.items_failed
        + report.interactions_folded
        + report.interactions_set_aside
        + report.users_rebuilt
    )


class WorkerStats:
    """The counters of one worker process."""

    def __init__(self) -> None:
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self.started = time.time()
        self.worker_id = f"{self.host}:{self.pid}:{int(self.started * 1000)}"
        self.totals = Totals()
        self._published = 0.0  # monotonic time of the last publish
        self._registered = False
        self.metrics: _Prometheus | None = None

    def serve(self, port: int, host: str = "127.0.0.1") -> None:
        """Serve the counters for Prometheus on ``host:port`` from now on (by default to
        this machine only: RERANKDB_METRICS_HOST=0.0.0.0 opens it to every interface)."""
        self.metrics = _Prometheus(port, host)

    def close(self) -> None:
        if self.metrics is not None:
            self.metrics.close()
            self.metrics = None

    def record(self, report: DrainReport) -> None:
        """Add a drain's figures (a drain that found nothing to do counts for nothing)."""
        if not did_work(report):
            return
        t = self.totals
        t.interactions_folded += report.interactions_folded
        t.items_embedded += report.items_embedded
        t.interactions_set_aside += report.interactions_set_aside
        t.items_failed += report.items_failed
        t.users_rebuilt += report.users_rebuilt
        t.drains += 1
        t.busy_seconds += report.seconds
        t.last_drain_seconds = report.seconds
        if self.metrics is not None:
            self.metrics.record(report)

    def publish(self, conn: psycopg.Connection[Any], *, force: bool = False) -> bool:
        """Write the totals to this worker's row (and refresh the queue gauges), if a drain
        did work since the last time or a heartbeat is due; returns whether it wrote."""
        now = time.monotonic()
        if not force and now - self._published < HEARTBEAT_SECONDS:
            return False
        if not self._registered:
            conn.execute(
                Q["register_worker"],
                {"worker_id": self.worker_id, "host": self.host, "pid": self.pid, "started": self.started},
            )
            self._registered = True
        conn.execute(Q["publish_worker"], {"worker_id": self.worker_id, **asdict(self.totals)})
        if self.metrics is not None:
            row = conn.execute(Q["queue_figures"]).fetchone()
            assert row is not None
            self.metrics.queues(*row)
        self._published = now
        return True


class _Prometheus:
    """The counters on an HTTP endpoint, in a registry of their own (several workers may
    share a process: the tests)."""

    def __init__(self, port: int, host: str) -> None:
        try:
            import prometheus_client as pc
        except ImportError:
            raise ConfigError(
                "RERANKDB_METRICS_PORT needs prometheus_client: pip install 'rerankdb[metrics]'"
            ) from None
        self.registry = pc.CollectorRegistry()
        r = self.registry

        def counter(name: str, doc: str) -> Any:
            return pc.Counter(f"rerankdb_{name}", doc, registry=r)

        self.folded = counter("interactions_folded", "interactions folded into user vectors")
        self.embedded = counter("items_embedded", "items embedded by the encoder")
        self.set_aside = counter("interactions_set_aside", "interactions that could not be folded (retried)")
        self.failed = counter("items_failed", "items whose text could not be embedded (retried)")
        self.rebuilt = counter("users_rebuilt", "users rebuilt from the log after it changed")
        self.drain_seconds = pc.Histogram(
            "rerankdb_drain_seconds",
            "seconds a drain that did some work took",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=r,
        )

        def gauge(name: str, doc: str) -> Any:
            return pc.Gauge(f"rerankdb_{name}", doc, registry=r)

        self.pending_interactions = gauge("pending_interactions", "interactions due to be folded")
        self.interaction_lag = gauge("interaction_lag_seconds", "age of the oldest due interaction (0: none)")
        self.pending_items = gauge("pending_items", "items due to be embedded")
        self.item_lag = gauge("item_lag_seconds", "age of the oldest due item (0: none)")
        try:
            self.server, self.thread = pc.start_http_server(port, addr=host, registry=r)
        except OSError as exc:
            raise ConfigError(
                f"cannot serve metrics on {host} port {port} (RERANKDB_METRICS_HOST, RERANKDB_METRICS_PORT): {exc}"
            ) from None

    def record(self, report: DrainReport) -> None:
        self.folded.inc(report.interactions_folded)
        self.embedded.inc(report.items_embedded)
        self.set_aside.inc(report.interactions_set_aside)
        self.failed.inc(report.items_failed)
        self.rebuilt.inc(report.users_rebuilt)
        self.drain_seconds.observe(report.seconds)

    def queues(
        self, interactions: int, interaction_lag: float | None, items: int, item_lag: float | None
    ) -> None:
        self.pending_interactions.set(interactions)
        self.interaction_lag.set(interaction_lag or 0.0)
        self.pending_items.set(items)
        self.item_lag.set(item_lag or 0.0)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
