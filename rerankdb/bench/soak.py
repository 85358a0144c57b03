"""The fault benchmark (``python -m rerankdb.bench soak``): nothing lost, nothing twice, no failed read.

On an embedded server of its own (a temporary directory, so the default one
is never restarted), for ``--seconds``: 4 writer connections insert
interactions, a share of them bad (refused at the door, or slipped past it as
a database upgraded from before the door may hold them), and now and then the
app deletes a row it wrote (its user is rebuilt); 2 readers call
``Client.rerank``; 2 worker processes fold.  In the middle: a worker is
killed with SIGKILL (and replaced), the server is restarted (``pg_ctl
restart``), and a training switches the collaborative space.  Then the
queues are drained and it checks, against the log and a full rebuild: every
acknowledged interaction is in the log, counted exactly once, every bad row
is set aside, no read failed.  Read latency under all this is printed beside
an idle baseline measured in the same run.

Hostile rows (:mod:`rerankdb.bench.hostile`, unless ``--big-seconds 0``): the
workers run with the encoder; after an idle phase, 10 MB item texts and
interactions with 10 MB contexts arrive (``--big-per-second``) for
``--big-seconds``, and go on arriving through the faulty part, where a pool of
threads also makes Clients (``--clients``).  Other users' INSERT-to-rerank
delay is printed for each phase beside the idle one.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import psycopg

from rerankdb import Client, DatabaseUnavailableError, db, embedded, migrate, user_refresh
from rerankdb.bench import hostile
from rerankdb.bench.common import machine, p50_p99, table
from rerankdb.drain import drain
from rerankdb.train import train

ITEMS, USERS, DIM = 2000, 2000, 384
CONTEXT_WEIGHT = 0.5  # the worker's default (the half-lives are rerankdb.settings')
BATCH = 10  # interactions per INSERT


@dataclass
class Tally:
    acked: dict[str, int] = field(default_factory=dict)  # batch tag -> rows acknowledged
    unacked: list[str] = field(default_factory=list)  # failed with an error: committed or not
    deleted: dict[str, int] = field(default_factory=dict)  # batch tag -> rows the app deleted again
    refused: int = 0  # bad rows the door refused
    sneaked: int = 0  # bad rows written past the door
    lock: threading.Lock = field(default_factory=threading.Lock)


def writer(url: str, n: int, stop: threading.Event, tally: Tally, seed: int) -> None:
    rng = np.random.default_rng(seed)
    batch = 0
    conn: psycopg.Connection[Any] | None = None
    while not stop.is_set():
        tag = f"soak:{n}:{batch}"
        users = rng.integers(1, USERS + 1, BATCH).tolist()
        items = rng.integers(1, ITEMS + 1, BATCH).tolist()
        kinds = rng.choice(["view", "click", "like", "purchase", "skip"], BATCH).tolist()
        try:
            if conn is None or conn.closed or conn.broken:
                conn = psycopg.connect(db.libpq_url(url), autocommit=True)
            if batch % 50 == 7:  # an app sending milliseconds as seconds: refused, nothing written
                try:
                    conn.execute(
                        "insert into rerankdb.interactions (user_id, item_id, occurred_at, context)"
                        " values (%s, %s, to_timestamp(1764000000000), %s)",
                        [users[0], items[0], tag + ":bad"],
                    )
                except psycopg.errors.DatetimeFieldOverflow:
                    with tally.lock:
                        tally.refused += 1
            if batch % 50 == 23:  # a row from before the door: set aside by the worker
                with conn.transaction():
                    conn.execute("set local session_replication_role = replica")
                    conn.execute(
                        "with i as (insert into rerankdb.interactions (user_id, item_id, occurred_at, context)"
                        " values (%s, %s, 'infinity', %s) returning interaction_id, item_id, user_id)"
                        " insert into rerankdb.interaction_queue (interaction_id, item_id, user_id)"
                        " select * from i",
                        [users[1], items[1], tag + ":legacy"],
                    )
                with tally.lock:
                    tally.sneaked += 1
            if batch % 20 == 11 and batch > 20:  # the app deletes a row it wrote: its user is rebuilt
                old = f"soak:{n}:{batch - 20}"
                with tally.lock:
                    known = tally.acked.get(old, 0) > tally.deleted.get(old, 0)
                if known:
                    cur_del = conn.execute(
                        "delete from rerankdb.interactions where interaction_id ="
                        " (select min(interaction_id) from rerankdb.interactions where context = %s)",
                        [old],
                    )
                    with tally.lock:
                        tally.deleted[old] = tally.deleted.get(old, 0) + cur_del.rowcount
            with conn.cursor() as cur:
                cur.executemany(
                    "insert into rerankdb.interactions (user_id, item_id, kind, context) values (%s, %s, %s, %s)",
                    [(u, i, k, tag) for u, i, k in zip(users, items, kinds, strict=True)],
                )
            with tally.lock:
                tally.acked[tag] = BATCH
        except psycopg.OperationalError:
            with tally.lock:
                tally.unacked.append(tag)
            if conn is not None:
                conn.close()
            conn = None
            time.sleep(0.2)
        batch += 1
        time.sleep(0.01)
    if conn is not None:
        conn.close()


def reader(url: str, stop: threading.Event, out: list[float], failures: list[str], seed: int) -> None:
    rng = np.random.default_rng(seed)
    with Client(url, max_connections=1, timeout=10.0) as client:
        while not stop.is_set():
            user = int(rng.integers(1, USERS + 1))
            candidates = rng.integers(1, ITEMS + 1, 100)
            t0 = time.perf_counter()
            try:
                ranked = client.rerank(user, candidates)
                if len(ranked) != len(np.unique(candidates)):
                    failures.append(f"user {user}: {len(ranked)} rows")
            except (DatabaseUnavailableError, psycopg.Error) as exc:
                failures.append(f"{type(exc).__name__}: {exc}")
                continue
            out.append((time.perf_counter() - t0) * 1000)


def start_worker(url: str, encoder: bool = False) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RERANKDB_")}
    env |= {"RERANKDB_DATABASE_URL": url, "RERANKDB_POLL_SECONDS": "0.5", "RERANKDB_TRAIN_CRON": "off"}
    return subprocess.Popen(
        [sys.executable, "-m", "rerankdb.cli", "worker", *([] if encoder else ["--no-encoder"])],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def setup(url: str, seed: int) -> None:
    migrate.upgrade(url)
    rng = np.random.default_rng(seed)
    with Client(url) as client:
        ids = list(range(1, ITEMS + 1))
        client.upsert_items({"item_id": i, "content": f"item {i}"} for i in ids)
        client.set_item_vectors(ids, rng.standard_normal((ITEMS, DIM)))
    with db.connect(url, autocommit=True) as conn:
        conn.execute("delete from rerankdb.item_queue")  # vectors were brought, not embedded
        history = [
            (int(u), int(i))
            for u, i in zip(
                rng.integers(1, USERS + 1, 20_000), rng.integers(1, ITEMS + 1, 20_000), strict=True
            )
        ]
        with conn.cursor().copy("copy rerankdb.interactions (user_id, item_id) from stdin") as cp:
            for row in history:
                cp.write_row(row)
        drain(conn, None, CONTEXT_WEIGHT, DIM)
        train(conn, None, CONTEXT_WEIGHT, DIM)


def wait_drained(url: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    with db.connect(url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            row = conn.execute(
                "select pending_interactions + deferred_interactions + users_to_rebuild from rerankdb.status"
            ).fetchone()
            if row is not None and row[0] == 0:
                return True
            time.sleep(0.2)
    return False


def check(url: str, tally: Tally, encoder: Any = None) -> dict[str, Any]:
    """What the log, the states and a full rebuild (with the workers' encoder) say about the run."""
    with db.connect(url, autocommit=True) as conn:
        logged = dict(
            conn.execute(
                "select context, count(*) from rerankdb.interactions where context like 'soak:%%' group by 1"
            ).fetchall()
        )
        lost = sum(
            max(0, n - tally.deleted.get(tag, 0) - logged.get(tag, 0)) for tag, n in tally.acked.items()
        )
        # Good rows per user in the log (set-aside rows are not counted by design) against the states.
        rows = conn.execute(
            "select l.user_id, l.n, coalesce(s.interactions, 0) from"
            " (select i.user_id, count(*) as n from rerankdb.interactions i"
            "  where not exists (select 1 from rerankdb.interaction_queue q"
            "                    where q.interaction_id = i.interaction_id and q.attempts > 0)"
            "  group by 1) l"
            " left join rerankdb.user_state s on s.user_id = l.user_id"
        ).fetchall()
        doubled = sum(max(0, counted - n) for _, n, counted in rows)
        missed = sum(max(0, n - counted) for _, n, counted in rows)
        set_aside = conn.execute("select failed_interactions from rerankdb.status").fetchone()[0]  # type: ignore[index]
        before = dict(
            conn.execute("select user_id, embedding from rerankdb.user_vectors", binary=True).fetchall()
        )
        user_refresh.rebuild_all(conn, encoder, CONTEXT_WEIGHT, DIM)
        after = dict(
            conn.execute("select user_id, embedding from rerankdb.user_vectors", binary=True).fetchall()
        )
        diff = max(
            (
                float(np.abs(before[u].to_numpy() - after[u].to_numpy()).max())
                for u in before.keys() & after.keys()
            ),
            default=0.0,
        )
        return {
            "written": sum(tally.acked.values()),
            "deleted again by the app (users rebuilt)": sum(tally.deleted.values()),
            "unacknowledged batches": len(tally.unacked),
            "lost": lost,
            "double-counted": doubled,
            "not folded": missed,
            "bad rows refused at the door": tally.refused,
            "bad rows slipped past it": tally.sneaked,
            "set aside": set_aside,
            "users differing from a rebuild": len(before.keys() ^ after.keys()),
            "max |incremental - rebuild|": f"{diff:.2e}",
        }


def soak(args: argparse.Namespace) -> None:
    # The pool says so each time it drops a connection the restart broke; the figures say the rest.
    logging.getLogger("psycopg").setLevel(logging.CRITICAL)
    home = Path(tempfile.mkdtemp(prefix="rerankdb-soak-"))
    url = db.create_database(embedded.start(home), "rerankdb_soak", replace=True)
    try:
        setup(url, args.seed)
        with db.connect(url) as conn:
            print(f"machine: {machine(conn)}")
        print(
            f"{ITEMS:,} items, {USERS:,} users, 20,000 interactions before; {args.seconds:.0f} s of faults\n"
        )

        def run_readers(
            seconds: float, stop: threading.Event
        ) -> tuple[list[float], list[str], list[threading.Thread]]:
            ms: list[float] = []
            failures: list[str] = []
            threads = [
                threading.Thread(target=reader, args=(url, stop, ms, failures, args.seed + k))
                for k in range(2)
            ]
            for t in threads:
                t.start()
            return ms, failures, threads

        idle_stop = threading.Event()
        idle_ms, idle_fail, idle_threads = run_readers(args.baseline, idle_stop)
        time.sleep(args.baseline)
        idle_stop.set()
        for th in idle_threads:
            th.join()

        big = args.big_seconds > 0
        encoder = None
        if big:  # the workers' encoder: a training or a check rebuilds users with their contexts too
            from rerankdb.encoder import TransformerEncoder

            encoder = TransformerEncoder()
        workers = [start_worker(url, encoder=big) for _ in range(2)]
        fresh: dict[str, list[float]] = {}
        fresh_fail: list[str] = []
        big_stop = threading.Event()
        big_out = hostile.BigRows()
        big_thread = threading.Thread(
            target=hostile.big_rows, args=(url, big_stop, args.big_per_second, ITEMS, big_out)
        )

        def probing(name: str, seconds: float) -> None:
            halt = threading.Event()
            out = fresh.setdefault(name, [])
            th = threading.Thread(target=hostile.probe, args=(url, halt, ITEMS, out, fresh_fail, args.seed))
            th.start()
            time.sleep(seconds)
            halt.set()
            th.join()

        if big:
            if not hostile.wait_ready(url, ITEMS, 300):
                print("the workers did not fold within 300 s of starting")
            probing("idle (baseline)", args.baseline)
            big_thread.start()
            probing("10 MB rows arriving", args.big_seconds)
            for name, ms in fresh.items():  # now, in case the faulty part does not finish
                if ms:
                    p50, p99 = p50_p99(ms)
                    print(f"INSERT-to-rerank, {name}: {len(ms)} events, p50 {p50:.1f} ms, p99 {p99:.1f} ms")

        stop = threading.Event()
        tally = Tally()
        writers = [
            threading.Thread(target=writer, args=(url, n, stop, tally, args.seed + 10 + n)) for n in range(4)
        ]
        for th in writers:
            th.start()
        load_ms, load_fail, load_threads = run_readers(args.seconds, stop)
        made: list[int] = []
        client_fail: list[str] = []
        pool = threading.Thread(target=hostile.client_pool, args=(url, stop, args.clients, made, client_fail))
        pool.start()
        fault_probe = threading.Thread(
            target=hostile.probe,
            args=(
                url,
                stop,
                ITEMS,
                fresh.setdefault("faults" + (" + 10 MB rows" if big else ""), []),
                fresh_fail,
                1,
            ),
        )
        fault_probe.start()
        events = []
        t0 = time.monotonic()

        def at(fraction: float) -> None:
            time.sleep(max(0.0, t0 + fraction * args.seconds - time.monotonic()))

        at(0.25)
        workers[0].send_signal(signal.SIGKILL)
        workers[0].wait()
        workers[0] = start_worker(url, encoder=big)
        events.append(f"{time.monotonic() - t0:5.1f} s  SIGKILL to a worker, a new one started")
        at(0.5)
        began = time.monotonic()
        embedded.restart(home)
        events.append(f"{began - t0:5.1f} s  pg_ctl restart ({time.monotonic() - began:.1f} s)")
        at(0.75)
        began = time.monotonic()
        with db.connect(url, autocommit=True) as conn:
            report = train(conn, encoder, CONTEXT_WEIGHT, DIM)
        events.append(f"{began - t0:5.1f} s  training, {report.dim}-d ({time.monotonic() - began:.1f} s)")
        at(1.0)
        stop.set()
        big_stop.set()
        for th in [*writers, *load_threads, pool, fault_probe, *([big_thread] if big else [])]:
            th.join()
        drained = wait_drained(url, 300)
        for w in workers:
            w.send_signal(signal.SIGTERM)
            w.wait(timeout=60)
        print("\n".join(events))
        result = check(url, tally, encoder)
        result["queues drained"] = drained
        result["reranks (idle, under faults)"] = f"{len(idle_ms):,}, {len(load_ms):,}"
        result["reranks failed"] = len(idle_fail) + len(load_fail)
        result["10 MB item texts, 10 MB contexts written"] = f"{big_out.items}, {big_out.contexts}"
        result["10 MB rows refused"] = len(big_out.failures)
        result["Clients made by the pool, failed"] = f"{len(made):,}, {len(client_fail)}"
        result["freshness probes failed"] = len(fresh_fail)
        print()
        print(table(["check", "value"], [[k, v] for k, v in result.items()]))
        for failure in (idle_fail + load_fail)[:5]:
            print(f"  failed read: {failure}")
        for what, failures in (
            ("10 MB row", big_out.failures),
            ("Client", client_fail),
            ("freshness probe", fresh_fail),
        ):
            for failure in failures[:5]:
                print(f"  failed {what}: {failure}")
        print("\nOther users' INSERT-to-rerank delay (a new user each event), wall ms")
        base = p50_p99(fresh.get("idle (baseline)", [])) if fresh.get("idle (baseline)") else None
        frows = []
        for name, ms in fresh.items():
            if not ms:
                frows.append([name, 0, "-", "-", "-"])
                continue
            p50, p99 = p50_p99(ms)
            vs = f"{p99 / base[1]:.2f}x" if base else "-"
            frows.append([name, f"{len(ms):,}", f"{p50:.1f}", f"{p99:.1f}", vs])
        print(table(["phase", "events", "p50", "p99", "p99 vs idle"], frows))
        rows = []
        for name, ms in (("idle (baseline)", idle_ms), ("writing, faults", load_ms)):
            p50, p99 = p50_p99(ms)
            rows.append([name, f"{len(ms):,}", f"{p50:.2f}", f"{p99:.2f}"])
        p_idle, p_load = p50_p99(idle_ms)[0], p50_p99(load_ms)[0]
        print("\nRerank of 100 candidates through Client, wall ms (2 readers)")
        print(table(["phase", "calls", "p50", "p99"], rows))
        print(f"\np50 under faults vs idle: {p_load / p_idle:.2f}x")
        ok = (
            result["lost"]
            == result["double-counted"]
            == result["not folded"]
            == result["reranks failed"]
            == 0
        )
        ok = ok and drained and result["set aside"] == tally.sneaked
        print(
            f"\ntarget (0 lost, 0 double-counted, 0 failed reranks, every good row folded): {'met' if ok else 'NOT met'}"
        )
    finally:
        embedded.stop(home)


def add_arguments(sub: Any) -> None:
    s = sub.add_parser("soak", help="faults under load: nothing lost or counted twice, no failed read")
    s.add_argument("--seconds", type=float, default=120.0, help="duration of the faulty part")
    s.add_argument("--baseline", type=float, default=10.0, help="seconds of idle reads first")
    s.add_argument("--seed", type=int, default=13)
    s.add_argument(
        "--big-seconds",
        type=float,
        default=30.0,
        help="seconds of 10 MB rows arriving before the faults (they go on through them); 0: none, "
        "and the workers run without the encoder",
    )
    s.add_argument("--big-per-second", type=float, default=1.0, help="10 MB rows a second")
    s.add_argument("--clients", type=int, default=4, help="threads making Clients during the faults")
    s.set_defaults(run=soak)
