"""``rerankdb worker``: scheduling only; the work itself is :mod:`rerankdb.drain`'s.

One refresh thread drains the queues whenever it is woken: by a NOTIFY on
'rerankdb_work' (sent at the commit of any insert into items or interactions,
so work starts within milliseconds), or by APScheduler's interval job, the
fallback poll.  APScheduler cron jobs train the collaborative item vectors
(RERANKDB_TRAIN_CRON, nightly by default), run a full rebuild when
RERANKDB_REBUILD_CRON is set and compact the log when RERANKDB_COMPACT_CRON
is.  After each drain the worker publishes its counters
(:mod:`rerankdb.worker_stats`: rerankdb.workers, and Prometheus with
RERANKDB_METRICS_PORT).  Every job uses max_instances=1 and coalescing.
SIGTERM / SIGINT finish the current batch and exit.  A lost database
connection is retried with exponential backoff; the worker keeps running.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from typing import Any

import psycopg
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger

from rerankdb import backoff, db, item_refresh, partitions, user_refresh
from rerankdb.config import Settings
from rerankdb.drain import DrainReport, drain
from rerankdb.encoder import Encoder
from rerankdb.errors import DimensionMismatchError
from rerankdb.sqlfiles import queries
from rerankdb.worker_stats import WorkerStats, did_work

Q = queries("worker")
log = logging.getLogger(__name__)

MAX_BACKOFF = 30.0
CITUS_POLL_HINT = 0.05  # seconds: the poll suggested on Citus, where no NOTIFY wakes the worker


def retry_delay(failures: int) -> float:
    """Seconds to wait after ``failures`` failures in a row: 0.5, 1, 2, ... up to 30."""
    return backoff.exponential(failures, first=0.5, cap=MAX_BACKOFF)


def check_encoder(conn: psycopg.Connection[Any], encoder: Encoder | None) -> int:
    """The schema's dimension, after checking the encoder produces it."""
    row = conn.execute(Q["dimension"]).fetchone()
    assert row is not None
    dim = int(row[0])
    if encoder is not None and encoder.dim != dim:
        raise DimensionMismatchError(dim, encoder.dim, f"encoder {encoder.name} vectors")
    return dim


class Worker:
    def __init__(
        self,
        url: str,
        settings: Settings,
        encoder: Encoder | None,
        *,
        listen: bool = True,
        before_commit: Callable[[], None] | None = None,
    ) -> None:
        """``before_commit`` runs before each user batch commits (fault injection in tests)."""
        self.url = url
        self.settings = settings
        self.encoder = encoder
        self._citus_warned = False
        self.listen = listen
        self.before_commit = before_commit
        self.context_weight = settings.context_weight  # the half-lives are in rerankdb.settings
        self.wake = threading.Event()
        self.stop = threading.Event()
        with db.connect(url, autocommit=True) as conn:
            self.dim = check_encoder(conn, encoder)
        self.stats = WorkerStats()

    # -- the work -------------------------------------------------------------

    def drain_once(self, conn: psycopg.Connection[Any] | None = None) -> DrainReport:
        """All due work, on ``conn`` or a connection of its own."""
        if conn is None:
            with db.connect(self.url, autocommit=True) as own:
                return self.drain_once(own)
        return drain(
            conn,
            self.encoder,
            self.context_weight,
            self.dim,
            should_stop=self.stop.is_set,
            before_commit=self.before_commit,
        )

    def run_once(self) -> DrainReport:
        """``rerankdb worker --once``: all due work, then this worker's row in rerankdb.workers."""
        with db.connect(self.url, autocommit=True) as conn:
            report = self.drain_once(conn)
            self.stats.record(report)
            self.stats.publish(conn, force=True)
        return report

    def requeue_all_items(self) -> int:
        """Queue every item for embedding (after a model change); returns how many."""
        with db.connect(self.url, autocommit=True) as conn:
            return item_refresh.requeue_all_items(conn)

    def rebuild(self, *, batch_users: int = 500, progress: Any = None) -> int:
        """Recompute every user's state from the log; returns interactions counted."""
        with db.connect(self.url, autocommit=True) as conn:
            return user_refresh.rebuild_all(
                conn,
                self.encoder,
                self.context_weight,
                self.dim,
                batch_users=batch_users,
                progress=progress,
                should_stop=self.stop.is_set,
            )

    def compact_retained(self) -> Any:
        """The scheduled compaction: the log older than RERANKDB_RETAIN_DAYS days."""
        from rerankdb.compact import cutoff_from_age

        return self.compact(cutoff_from_age(self.settings.retain_days))

    def compact(self, before: Any, *, progress: Any = None) -> Any:
        """Fold the log before ``before`` into user snapshots and delete it (``rerankdb compact``)."""
        from rerankdb.compact import compact

        with db.connect(self.url, autocommit=True) as conn:
            return compact(
                conn,
                self.encoder,
                self.context_weight,
                self.dim,
                before,
                progress=progress,
                should_stop=self.stop.is_set,
            )

    # -- the loop ---------------------------------------------------------------

    def _warn_if_citus_polls_slowly(self, conn: psycopg.Connection[Any]) -> None:
        """On Citus no NOTIFY wakes the worker (sql/citus/README.md): say so once if it polls slowly."""
        if self._citus_warned or not partitions.of(conn).citus:
            return
        self._citus_warned = True
        if self.settings.poll_seconds > CITUS_POLL_HINT:
            log.warning(
                "on Citus no NOTIFY reaches the worker: it polls every %g s, so a new interaction "
                "waits up to that long; set RERANKDB_POLL_SECONDS=%g for folds within about %d ms",
                self.settings.poll_seconds,
                CITUS_POLL_HINT,
                CITUS_POLL_HINT * 1000,
            )

    def _refresh_loop(self) -> None:
        failures = 0
        conn: psycopg.Connection[Any] | None = None  # kept open: a wake-up costs no connect
        while not self.stop.is_set():
            self.wake.wait()
            self.wake.clear()
            if self.stop.is_set():
                break
            try:
                if conn is None or conn.closed or conn.broken:
                    conn = db.connect(self.url, autocommit=True)
                    self._warn_if_citus_polls_slowly(conn)
                report = self.drain_once(conn)
                self.stats.record(report)
                self.stats.publish(conn, force=did_work(report))
                failures = 0
                if report.interactions_folded or report.items_embedded:
                    log.info(
                        "drained: %d items embedded, %d interactions folded in %.3f s",
                        report.items_embedded,
                        report.interactions_folded,
                        report.seconds,
                    )
            except Exception as exc:  # the loop must outlive any one failure
                if conn is not None:
                    conn.close()
                conn = None
                failures += 1
                delay = retry_delay(failures)
                if db.lost_connection(exc):
                    log.warning("database unreachable (%s); retrying in %.1f s", str(exc).strip(), delay)
                else:
                    log.exception("refresh failed; retrying in %.1f s", delay)
                self.stop.wait(delay)
                self.wake.set()
        if conn is not None:
            conn.close()

    def _listen_loop(self) -> None:
        failures = 0
        while not self.stop.is_set():
            try:
                with psycopg.connect(db.libpq_url(self.url), autocommit=True) as conn:
                    conn.execute(Q["listen"])
                    failures = 0
                    self.wake.set()  # anything that arrived while not listening
                    while not self.stop.is_set():
                        for _ in conn.notifies(timeout=0.5, stop_after=1):
                            self.wake.set()
            except Exception as exc:  # keep listening whatever happened
                failures += 1
                delay = retry_delay(failures)
                log.warning("LISTEN connection lost (%s); reconnecting in %.1f s", str(exc).strip(), delay)
                self.stop.wait(delay)

    def train(
        self, sequence: bool | None = None, progress: Callable[[int, float], None] | None = None
    ) -> Any:
        """Learn collaborative item vectors and the sequence model from the log, then rebuild
        users (``rerankdb train``).  ``sequence``: train the sequence model (default: the
        setting RERANKDB_SEQUENCE); ``progress(epoch, held-out NDCG@10)`` per epoch of it."""
        from rerankdb.train import train

        seq = self.settings.sequence if sequence is None else sequence
        with db.connect(self.url, autocommit=True) as conn:
            return train(conn, self.encoder, self.context_weight, self.dim, sequence=seq, progress=progress)

    def tune(self, **kwargs: Any) -> Any:
        """Choose the settings on the log and write them (``rerankdb tune``); every user is
        rebuilt in the same transaction if a half-life changed.  kwargs: :func:`rerankdb.tune.tune`'s."""
        from rerankdb.tune import tune

        with db.connect(self.url, autocommit=True) as conn:
            return tune(
                conn, encoder=self.encoder, context_weight=self.context_weight, dim=self.dim, **kwargs
            )

    def train_then_tune(self) -> None:
        """The nightly job with RERANKDB_TUNE_AFTER_TRAIN=on: train, then tune on the new vectors."""
        self.train()
        report = self.tune()
        log.info("tuned: %s (was %s)", report.chosen.label, report.current.label)

    def jobs(self) -> list[tuple[str, str | None, Callable[[], Any]]]:
        """The cron jobs: (name, crontab line or None for off, what runs)."""
        train = self.train_then_tune if self.settings.tune_after_train else self.train
        return [
            ("rebuild", self.settings.rebuild_cron, self.rebuild),
            ("train", self.settings.train_cron, train),
            ("compact", self.settings.compact_cron, self.compact_retained),
        ]

    def _scheduled(self, name: str, job: Any) -> None:
        """A cron job: its failure is logged and the job runs again at its next time."""
        try:
            job()
            log.info("scheduled %s done", name)
        except Exception:
            log.exception("scheduled %s failed; it runs again at its next time", name)

    def run(self, *, install_signals: bool = True) -> None:
        """Run until stop is set (SIGTERM/SIGINT when install_signals)."""
        if install_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, lambda *_: self.request_stop())
        scheduler = BackgroundScheduler(timezone="UTC")
        scheduler.add_job(
            self.wake.set,
            "interval",
            seconds=self.settings.poll_seconds,
            id="poll",
            max_instances=1,
            coalesce=True,
        )
        for name, cron, job in self.jobs():
            if cron:
                scheduler.add_job(
                    self._scheduled,
                    CronTrigger.from_crontab(cron, timezone="UTC"),
                    args=[name, job],
                    id=name,
                    max_instances=1,
                    coalesce=True,
                )
        if self.settings.metrics_port is not None:
            self.stats.serve(self.settings.metrics_port, self.settings.metrics_host)
        threads = [threading.Thread(target=self._refresh_loop, name="rerankdb-refresh", daemon=True)]
        if self.listen:
            threads.append(threading.Thread(target=self._listen_loop, name="rerankdb-listen", daemon=True))
        log.info(
            "worker started: encoder %s, poll every %g s, NOTIFY %s, rebuild %s, train %s%s, compact %s, "
            "metrics %s",
            self.encoder.name if self.encoder else "none",
            self.settings.poll_seconds,
            "on" if self.listen else "off",
            self.settings.rebuild_cron or "off",
            self.settings.train_cron or "off",
            " then tune" if self.settings.train_cron and self.settings.tune_after_train else "",
            f"{self.settings.compact_cron} (keeping {self.settings.retain_days:g} days)"
            if self.settings.compact_cron
            else "off",
            f"on {self.settings.metrics_host} port {self.settings.metrics_port}"
            if self.settings.metrics_port is not None
            else "off",
        )
        self.wake.set()
        for t in threads:
            t.start()
        scheduler.start()
        try:
            while not self.stop.wait(0.2):
                pass
        finally:
            scheduler.shutdown(wait=True)
            self.wake.set()
            for t in threads:
                t.join()
            self.stats.close()
            log.info("worker stopped")

    def request_stop(self) -> None:
        self.stop.set()
        self.wake.set()
