"""Past one server: reads on a streaming replica, and several worker processes on one database.

* ``replica``: an embedded primary and its streaming replica (pg_basebackup
  -R, on this machine), a worker on the primary.  Prints the delay from a
  committed INSERT on the primary to a rerank that reflects it, read on the
  replica beside read on the primary (events alternate); then rerank
  throughput (pgbench, the server's own client) with every read on the
  primary beside the same clients split across primary and replica.
* ``workers``: interactions folded and items embedded per second with 1, 2
  and 4 ``rerankdb worker`` processes draining one backlog (exactly once:
  the bench checks every interaction is counted once).
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import psycopg

from rerankdb import db, embedded, migrate
from rerankdb.bench.common import machine, p50_p99, table
from rerankdb.bench.worker import fresh_database, real_texts, reflected, seed_catalog
from rerankdb.config import Settings
from rerankdb.worker import Worker

# --- replica ------------------------------------------------------------------------


def seed_users(url: str, users: int, items: int, seed: int) -> None:
    """``users`` users with 20 interactions each, folded: the readers' population."""
    rng = np.random.default_rng(seed)
    with db.connect(url, autocommit=True) as conn:
        with conn.cursor().copy("copy rerankdb.interactions (user_id, item_id, kind) from stdin") as cp:
            for u in range(1, users + 1):
                for i in rng.integers(1, items + 1, 20).tolist():
                    cp.write_row((u, i, "view"))
        Worker(url, Settings(), None, listen=False).drain_once(conn)


def freshness_through(
    primary: str, replica: str, events: int, items: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """(delays read on the primary, delays read on the replica), ms; events alternate."""
    worker = Worker(primary, Settings(poll_seconds=1.0), None)
    thread = threading.Thread(target=worker.run, kwargs={"install_signals": False})
    thread.start()
    rng = np.random.default_rng(seed)
    out: dict[str, list[float]] = {"primary": [], "replica": []}
    try:
        time.sleep(1.0)  # start-up drain done, LISTEN in place
        with (
            db.connect(primary, autocommit=True) as writer,
            db.connect(primary, autocommit=True) as on_primary,
            db.connect(replica, autocommit=True) as on_replica,
        ):
            for e in range(2 * events):
                where, reader = ("primary", on_primary) if e % 2 == 0 else ("replica", on_replica)
                user, item = 5_000_000 + e, int(rng.integers(1, items + 1))
                writer.execute(
                    "insert into rerankdb.interactions (user_id, item_id, kind) values (%s, %s, 'like')",
                    [user, item],
                )
                t0 = time.perf_counter()  # committed on the primary
                while not reflected(reader, user, item):
                    time.sleep(0.0005)
                out[where].append((time.perf_counter() - t0) * 1000)
                time.sleep(float(rng.uniform(0, 0.05)))
    finally:
        worker.request_stop()
        thread.join()
    return np.array(out["primary"]), np.array(out["replica"])


PGBENCH_SCRIPT = """\
\\set user random(1, {users})
\\set first random(1, {last_first})
select count(*) from rerankdb.rerank(:user, array(select generate_series(:first, :first + {cands} - 1)::bigint));
"""


def _pgbench(bin_path: Path, url: str, script: Path, clients: int, seconds: int) -> subprocess.Popen[str]:
    """A pgbench run against ``url`` (an embedded server's socket URL), started."""
    host = re.search(r"host=([^&]+)", url)
    assert host is not None, url
    dbname = urlsplit(url).path.lstrip("/")
    args = [str(bin_path / "pgbench"), "-n", "-h", host.group(1), "-U", "postgres", "-f", str(script)]
    args += ["-c", str(clients), "-j", str(min(clients, 2)), "-T", str(seconds), dbname]
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _tps(proc: subprocess.Popen[str]) -> float:
    out, err = proc.communicate()
    found = re.search(r"tps = ([0-9.]+)", out)
    if proc.returncode != 0 or found is None:
        raise RuntimeError(f"pgbench failed: {err.strip() or out.strip()}")
    return float(found.group(1))


def replica(args: argparse.Namespace) -> None:
    base = Path(tempfile.mkdtemp(prefix="rerankdb-bench-replica-"))
    primary_home, replica_home = base / "primary", base / "replica"
    try:
        primary = embedded.start(primary_home)
        migrate.upgrade(primary)
        seed_catalog(primary, args.items, args.seed)
        seed_users(primary, args.users, args.items, args.seed)
        standby = embedded.start_replica(primary_home, replica_home)
        with db.connect(primary) as conn:
            print(f"machine: {machine(conn)}")
        print(f"{args.items:,} items, {args.users:,} users; a worker on the primary (LISTEN/NOTIFY)\n")
        on_primary, on_replica = freshness_through(primary, standby, args.events, args.items, args.seed)
        rows = []
        for name, ms in (("read on the primary (baseline)", on_primary), ("read on the replica", on_replica)):
            p50, p99 = p50_p99(ms)
            rows.append([name, len(ms), f"{p50:.1f}", f"{p99:.1f}", f"{ms.max():.1f}"])
        print("Time from a committed INSERT on the primary to a rerank that reflects it, ms")
        print(table(["reads", "events", "p50", "p99", "max"], rows))
        d50 = np.median(on_replica) - np.median(on_primary)
        print(f"\nthe replica adds {d50:.1f} ms at p50\n")

        bins = embedded.bin_dir(primary_home)
        script = base / "rerank.sql"
        script.write_text(
            PGBENCH_SCRIPT.format(
                users=args.users, cands=args.candidates, last_first=args.items - args.candidates
            )
        )
        one, split = [], []
        for _ in range(args.rounds):  # alternately, so drift hits both
            one.append(_tps(_pgbench(bins, primary, script, args.clients, args.seconds)))
            half = args.clients // 2
            procs = [
                _pgbench(bins, primary, script, half, args.seconds),
                _pgbench(bins, standby, script, args.clients - half, args.seconds),
            ]
            split.append(sum(_tps(p) for p in procs))
        rows = [
            [f"{args.clients} clients on the primary (baseline)", f"{np.median(one):,.0f}", "1.00x"],
            [
                f"{args.clients // 2} on the primary + {args.clients - args.clients // 2} on the replica",
                f"{np.median(split):,.0f}",
                f"{np.median(split) / np.median(one):.2f}x",
            ],
        ]
        print(
            f"rerank throughput, {args.candidates} candidates, pgbench {args.seconds} s x {args.rounds} rounds "
            "(median), calls/s"
        )
        print(table(["reads", "calls/s", "vs one server"], rows))
        print(f"\nboth servers share this machine's {os.cpu_count()} cores: see rerankdb/bench/README.md")
    finally:
        embedded.stop(replica_home)
        embedded.stop(primary_home)


# --- many workers --------------------------------------------------------------------


def _start_workers(url: str, n: int, encoder: bool) -> list[subprocess.Popen[bytes]]:
    env = {**os.environ, "RERANKDB_DATABASE_URL": url, "RERANKDB_TRAIN_CRON": "off"}
    args = [sys.executable, "-m", "rerankdb.cli", "worker"] + ([] if encoder else ["--no-encoder"])
    return [
        subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(n)
    ]


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        p.send_signal(signal.SIGTERM)
    for p in procs:
        p.wait(timeout=60)


def _one(conn: psycopg.Connection[Any], query: str) -> int:
    row = conn.execute(query).fetchone()
    assert row is not None
    return int(row[0])


def _wait_registered(conn: psycopg.Connection[Any], n: int, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while _one(conn, "select count(*) from rerankdb.workers where seen_at > now() - interval '1 minute'") < n:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{n} workers did not start within {timeout:.0f} s")
        time.sleep(0.2)


def fold_with(url: str, workers: int, interactions: int, users: int, items: int, seed: int) -> float:
    """Interactions folded per second by ``workers`` processes draining one backlog."""
    rng = np.random.default_rng(seed)
    with db.connect(url, autocommit=True) as conn:
        conn.execute("delete from rerankdb.workers")
        procs = _start_workers(url, workers, encoder=False)
        try:
            _wait_registered(conn, workers)
            before = _one(conn, "select coalesce(sum(interactions), 0) from rerankdb.user_state")
            with (
                conn.transaction(),
                conn.cursor().copy("copy rerankdb.interactions (user_id, item_id, kind) from stdin") as cp,
            ):
                for u, i in zip(
                    rng.integers(1, users + 1, interactions).tolist(),
                    rng.integers(1, items + 1, interactions).tolist(),
                    strict=True,
                ):
                    cp.write_row((u, i, "view"))
            t0 = time.perf_counter()  # committed: NOTIFY wakes every worker
            while _one(conn, "select count(*) from rerankdb.interaction_queue") > 0:
                time.sleep(0.01)
            seconds = time.perf_counter() - t0
            counted = _one(conn, "select coalesce(sum(interactions), 0) from rerankdb.user_state") - before
            if counted != interactions:
                raise RuntimeError(
                    f"{counted} interactions counted for {interactions} inserted: not exactly once"
                )
        finally:
            _stop(procs)
    return interactions / seconds


def embed_with(url: str, workers: int, texts: list[str], first_id: int) -> float:
    """Items embedded per second by ``workers`` processes (each with the encoder)."""
    with db.connect(url, autocommit=True) as conn:
        conn.execute("delete from rerankdb.workers")
        procs = _start_workers(url, workers, encoder=True)
        try:
            _wait_registered(conn, workers)
            with (
                conn.transaction(),
                conn.cursor().copy("copy rerankdb.items (item_id, content) from stdin") as cp,
            ):
                for k, text in enumerate(texts):
                    cp.write_row((first_id + k, text))
            t0 = time.perf_counter()
            while _one(conn, "select count(*) from rerankdb.item_queue") > 0:
                time.sleep(0.02)
            seconds = time.perf_counter() - t0
        finally:
            _stop(procs)
    return len(texts) / seconds


def workers(args: argparse.Namespace) -> None:
    url = fresh_database(args.items, args.seed)
    with db.connect(url) as conn:
        print(f"machine: {machine(conn)}")
    texts = real_texts(args.texts)[0]
    fold_rates: dict[int, list[float]] = {n: [] for n in args.counts}
    embed_rates: dict[int, float] = {}
    for r in range(args.rounds):
        for n in args.counts:
            fold_rates[n].append(fold_with(url, n, args.interactions, args.users, args.items, args.seed + r))
    if args.texts:
        for k, n in enumerate(args.counts):
            embed_rates[n] = embed_with(url, n, texts, 10_000_000 + k * len(texts))
    base = np.median(fold_rates[args.counts[0]])
    rows = []
    for n in args.counts:
        rate = float(np.median(fold_rates[n]))
        row = [n, f"{rate:,.0f}", f"{rate / base:.2f}x"]
        if embed_rates:
            row += [f"{embed_rates[n]:,.0f}", f"{embed_rates[n] / embed_rates[args.counts[0]]:.2f}x"]
        rows.append(row)
    headers = ["workers", "folded/s", "vs 1"] + (["embedded/s", "vs 1"] if embed_rates else [])
    print(
        f"\n{args.interactions:,} interactions of {args.users:,} users per round (median of {args.rounds}); "
        f"{args.texts:,} texts to embed"
    )
    print(table(headers, rows))
    print("every interaction counted exactly once in every run")


def add_arguments(sub: Any) -> None:
    r = sub.add_parser("replica", help="reads on a streaming replica: freshness and throughput")
    r.add_argument("--items", type=int, default=10_000)
    r.add_argument("--users", type=int, default=2_000)
    r.add_argument("--events", type=int, default=200, help="INSERT-to-rerank events per side")
    r.add_argument("--candidates", type=int, default=100)
    r.add_argument("--clients", type=int, default=4)
    r.add_argument("--seconds", type=int, default=10)
    r.add_argument("--rounds", type=int, default=3)
    r.add_argument("--seed", type=int, default=21)
    r.set_defaults(run=replica)

    w = sub.add_parser("workers", help="fold and embed throughput with 1, 2, 4 worker processes")
    w.add_argument("--counts", type=int, nargs="+", default=[1, 2, 4])
    w.add_argument("--interactions", type=int, default=100_000)
    w.add_argument("--users", type=int, default=10_000)
    w.add_argument("--items", type=int, default=2000)
    w.add_argument("--texts", type=int, default=2000, help="texts embedded per count (0: skip)")
    w.add_argument("--rounds", type=int, default=2)
    w.add_argument("--seed", type=int, default=22)
    w.set_defaults(run=workers)
