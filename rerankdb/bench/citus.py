"""rerankdb on a local Citus cluster beside one node: the same data, the same run.

A coordinator and two workers (rerankdb.citus, built from the Citus source
once) and the embedded single server, both on this machine, get the same
catalog and users.  Printed, Citus beside one node:

* rerank p50 / p99 at 100 and 1000 candidates, and recommend, from one
  connection, calls alternating between the two in rounds (drift hits both);
* the delay from a committed INSERT to a rerank that reflects it (one node:
  the worker wakes on NOTIFY; Citus: it polls, NOTIFY cannot cross a
  two-phase commit);
* interactions folded per second by 1 and 2 ``rerankdb worker`` processes
  draining one backlog (counted exactly once, checked);
* the plan of one call: delegated to the user's worker node.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import psycopg

from rerankdb import citus, db, embedded, migrate
from rerankdb.bench.common import machine, p50_p99, table
from rerankdb.bench.fleet import fold_with, seed_users
from rerankdb.bench.worker import reflected, seed_catalog
from rerankdb.config import Settings
from rerankdb.worker import Worker

NODE_OF_USER = (
    "select nodename || ':' || nodeport from pg_dist_shard_placement "
    "where shardid = get_shard_id_for_distribution_column('rerankdb.interactions', %s::bigint)"
)
CITUS_POLL_SECONDS = 0.05  # the worker's poll on Citus (RERANKDB_POLL_SECONDS), no NOTIFY there


def add_arguments(sub: Any) -> None:
    p = sub.add_parser("citus", help="rerank, freshness and folds on a local Citus cluster beside one node")
    p.add_argument("--items", type=int, default=10_000)
    p.add_argument("--users", type=int, default=2_000)
    p.add_argument("--calls", type=int, default=200, help="calls per round per server")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--events", type=int, default=40, help="INSERT-to-rerank events per server")
    p.add_argument("--backlog", type=int, default=20_000, help="interactions per fold measurement")
    p.add_argument("--shards", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(run=run)


def _calls(
    urls: dict[str, str], query: str, make: Any, calls: int, rounds: int, seed: int
) -> dict[str, np.ndarray]:
    """Per-call ms of ``query`` on each server, alternating rounds, on one connection each."""
    conns = {name: db.connect(url, autocommit=True) for name, url in urls.items()}
    out: dict[str, list[float]] = {name: [] for name in urls}
    try:
        for r in range(rounds + 1):  # round 0 warms the caches, not counted
            for name, conn in conns.items():
                rng = np.random.default_rng(seed + r)  # the same calls on both
                for _ in range(calls):
                    params = make(rng)
                    t0 = time.perf_counter()
                    conn.execute(query, params).fetchall()
                    if r:
                        out[name].append((time.perf_counter() - t0) * 1000)
    finally:
        for conn in conns.values():
            conn.close()
    return {name: np.array(ms) for name, ms in out.items()}


def _freshness(url: str, listen: bool, poll: float, events: int, items: int, seed: int) -> np.ndarray:
    """Delays (ms) from a committed INSERT of a new user's interaction to a rerank reflecting it."""
    worker = Worker(url, Settings(poll_seconds=poll), None, listen=listen)
    thread = threading.Thread(target=worker.run, kwargs={"install_signals": False})
    thread.start()
    rng = np.random.default_rng(seed)
    out = []
    try:
        time.sleep(1.0)  # start-up drain done
        with db.connect(url, autocommit=True) as writer, db.connect(url, autocommit=True) as reader:
            for e in range(events):
                user, item = 7_000_000 + e, int(rng.integers(1, items + 1))
                writer.execute(
                    "insert into rerankdb.interactions (user_id, item_id, kind) values (%s, %s, 'like')",
                    [user, item],
                )
                t0 = time.perf_counter()
                while not reflected(reader, user, item):
                    time.sleep(0.0005)
                out.append((time.perf_counter() - t0) * 1000)
                time.sleep(float(rng.uniform(0, 0.1)))
    finally:
        worker.request_stop()
        thread.join()
    return np.array(out)


def _delegation(url: str, user: int) -> str:
    with psycopg.connect(db.libpq_url(url), autocommit=True) as conn:
        plan = [
            r[0]
            for r in conn.execute("explain select * from rerankdb.rerank(%s, array[1, 2]::bigint[])", [user])
        ]
        node = conn.execute(
            "select nodename || ':' || nodeport from pg_dist_shard_placement "
            "where shardid = get_shard_id_for_distribution_column('rerankdb.interactions', %s::bigint)",
            [user],
        ).fetchone()
    assert node is not None
    return "\n".join(plan) + f"\n(user {user}'s shard is on {node[0]})"


def _users_on(url: str, port: int, users: int) -> list[int]:
    """The users (of 1..users) whose shard is on the worker node listening on ``port``."""
    with psycopg.connect(db.libpq_url(url), autocommit=True) as conn:
        rows = conn.execute(
            "select u from generate_series(1, %s) u join pg_dist_shard_placement p "
            "on p.shardid = get_shard_id_for_distribution_column('rerankdb.interactions', u::bigint) "
            "where p.nodeport = %s",
            [users, port],
        ).fetchall()
    return [int(r[0]) for r in rows]


def _row(name: str, one: np.ndarray, dist: np.ndarray) -> list[str]:
    (a50, a99), (b50, b99) = p50_p99(one), p50_p99(dist)
    return [name, f"{a50:.2f}", f"{b50:.2f}", f"{b50 - a50:+.2f}", f"{a99:.2f}", f"{b99:.2f}"]


def run(args: argparse.Namespace) -> None:
    home = Path(tempfile.mkdtemp(prefix="rerankdb-bench-citus-"))
    try:
        cluster = citus.up(home, workers=2)
        urls = {"one node": embedded.start(home / "single"), "Citus": cluster.url()}
        migrate.upgrade(urls["one node"])
        migrate.upgrade(urls["Citus"])
        citus.apply_layout(urls["Citus"], shard_count=args.shards)
        for url in urls.values():
            seed_catalog(url, args.items, args.seed)
            seed_users(url, args.users, args.items, args.seed)
        with db.connect(urls["one node"]) as conn:
            print(f"machine: {machine(conn)}")
        print(
            f"{args.items:,} items (384-d), {args.users:,} users x 20 interactions, the same on both; "
            f"Citus 14 on this machine: a coordinator and 2 workers, {args.shards} shards\n"
        )
        print("A call, sent to the coordinator outside a transaction block:")
        print(_delegation(urls["Citus"], 42) + "\n")

        rows = []
        for cands in (100, 1000):

            def rerank_params(rng: np.random.Generator, cands: int = cands) -> list[Any]:
                ids = rng.choice(np.arange(1, args.items + 1), cands, replace=False)
                return [int(rng.integers(1, args.users + 1)), ids.tolist()]

            ms = _calls(
                urls,
                "select * from rerankdb.rerank(%s, %s)",
                rerank_params,
                args.calls,
                args.rounds,
                args.seed,
            )
            rows.append(_row(f"rerank, {cands} candidates", ms["one node"], ms["Citus"]))
        ms = _calls(
            urls,
            "select * from rerankdb.recommend(%s, 10)",
            lambda rng: [int(rng.integers(1, args.users + 1))],
            args.calls,
            args.rounds,
            args.seed,
        )
        rows.append(_row("recommend, k = 10", ms["one node"], ms["Citus"]))
        print(f"Calls from one connection, ms ({args.rounds} alternating rounds of {args.calls} calls each)")
        print(table(["call", "one node p50", "Citus p50", "Citus adds", "one node p99", "Citus p99"], rows))

        # Where Citus's cost goes: the same calls sent to the user's worker node directly
        # (Citus answers on any node), for users whose shard is on the first worker.
        local = _users_on(urls["Citus"], cluster.ports[1], args.users)
        where = {**urls, "the user's worker node": cluster.url(1)}
        split = []
        for cands in (100, 1000):

            def local_params(rng: np.random.Generator, cands: int = cands) -> list[Any]:
                ids = rng.choice(np.arange(1, args.items + 1), cands, replace=False)
                return [int(rng.choice(local)), ids.tolist()]

            ms = _calls(
                where,
                "select * from rerankdb.rerank(%s, %s)",
                local_params,
                args.calls,
                args.rounds,
                args.seed,
            )
            split.append(
                [str(cands)]
                + [f"{p50_p99(ms[k])[0]:.2f}" for k in ("one node", "the user's worker node", "Citus")]
            )
        print("\nrerank p50, ms, for users on the first worker node: where the added time goes")
        print(
            table(["candidates", "one node", "on the user's worker node", "through the coordinator"], split)
        )

        one = _freshness(urls["one node"], True, 1.0, args.events, args.items, args.seed)
        dist = _freshness(urls["Citus"], False, CITUS_POLL_SECONDS, args.events, args.items, args.seed)
        print("\nFrom a committed INSERT to a rerank that reflects it, ms")
        print(
            table(
                ["server", "worker wakes by", "p50", "p99"],
                [
                    ["one node", "NOTIFY", *(f"{x:.1f}" for x in p50_p99(one))],
                    [
                        "Citus",
                        f"polling every {CITUS_POLL_SECONDS:g} s",
                        *(f"{x:.1f}" for x in p50_p99(dist)),
                    ],
                ],
            )
        )

        os.environ["RERANKDB_POLL_SECONDS"] = str(CITUS_POLL_SECONDS)  # the worker processes' poll
        fold_rows = []
        for n in (1, 2):
            rates = [
                fold_with(url, n, args.backlog, args.users, args.items, args.seed + n)
                for url in urls.values()
            ]
            fold_rows.append([str(n), f"{rates[0]:,.0f}", f"{rates[1]:,.0f}", f"{rates[1] / rates[0]:.2f}x"])
        print(f"\nInteractions folded per second, a backlog of {args.backlog:,} (each counted once: checked)")
        print(table(["worker processes", "one node", "Citus", "Citus / one node"], fold_rows))
        print(f"\nall servers share this machine's {os.cpu_count()} cores: see rerankdb/bench/README.md")
    finally:
        citus.down(home, delete=True)
        embedded.stop(home / "single")
