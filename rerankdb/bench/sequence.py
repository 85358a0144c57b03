"""``python -m rerankdb.bench sequence``: what the sequence space costs, beside it off, same run.

A catalog of random item vectors and a log of users walking chains of items
(what follows what is all there is to learn), folded and trained.  Then,
with the sequence model installed and, beside it, without (its rows moved
aside, the collaborative space the same):

* freshness: committed INSERT of an interaction of a user with a history
  until ``rerank`` for that user returns a changed score (the fold, and
  with the sequence space the forward pass, committed), a worker running;
* fold throughput: a batch of interactions of users with histories, drained;
* ``rerank`` server time at 100 and 1000 candidates: the function of
  revision 0010 (installed here under another name, the baseline), and
  today's with ``sequence_weight`` 0 and 0.3;
* the model's CPU inference cost per user (their newest 50 items), batch 1
  (one thread) and batch 256.

The training itself is timed by ``rerankdb eval`` on MovieLens (docs/evaluation.md).
"""

from __future__ import annotations

import argparse
import re
import threading
import time
from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np
import psycopg
import torch

from rerankdb import db, sequence, sqlfiles, user_refresh
from rerankdb.bench.common import machine, p50_p99, table
from rerankdb.bench.worker import fresh_database
from rerankdb.config import Settings
from rerankdb.drain import drain
from rerankdb.train import train
from rerankdb.worker import Worker

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
CONFIG = sequence.SequenceConfig(max_epochs=2)  # the shipped shape; the cost, not the quality


def chains(conn: psycopg.Connection[Any], users: int, items: int, length: int, seed: int) -> None:
    """Each user walks ``length`` consecutive items from a random start, an hour apart."""
    rng = np.random.default_rng(seed)
    with conn.cursor().copy(
        "copy rerankdb.interactions (user_id, item_id, kind, occurred_at) from stdin"
    ) as cp:
        for u in range(1, users + 1):
            start = int(rng.integers(1, items - length))
            for k in range(length):
                cp.write_row((u, start + k, "like", T0 + timedelta(hours=k)))


def set_model(conn: psycopg.Connection[Any], on: bool) -> None:
    """The sequence model installed (on) or moved aside (off); the vectors follow."""
    if on:
        conn.execute("insert into rerankdb.sequence_model select * from public.model_aside")
        conn.execute(
            "update rerankdb.item_rank r set seq = a.seq from public.item_seq_aside a where a.item_id = r.item_id"
        )
    else:
        conn.execute("create table if not exists public.model_aside as select * from rerankdb.sequence_model")
        conn.execute(
            "create table if not exists public.item_seq_aside as "
            "select item_id, seq from rerankdb.item_rank where seq is not null"
        )
        conn.execute("delete from rerankdb.sequence_model")
        conn.execute("update rerankdb.item_rank set seq = null")
        conn.execute("update rerankdb.user_vectors set seq = null, seq_items = null, seq_attention = null")


def score(conn: psycopg.Connection[Any], user: int, item: int) -> float | None:
    row = conn.execute("select score from rerankdb.rerank(%s, array[%s]::bigint[])", [user, item]).fetchone()
    return None if row is None else row[0]


def freshness(url: str, events: int, users: int, items: int, seed: int) -> np.ndarray:
    worker = Worker(url, Settings(poll_seconds=1.0), None, listen=True)
    thread = threading.Thread(target=worker.run, kwargs={"install_signals": False})
    thread.start()
    rng = np.random.default_rng(seed)
    out = np.empty(events)
    try:
        time.sleep(1.0)
        with db.connect(url, autocommit=True) as writer, db.connect(url, autocommit=True) as reader:
            for e in range(events):
                user, item = int(rng.integers(1, users + 1)), int(rng.integers(1, items + 1))
                before = score(reader, user, item)
                writer.execute(
                    "insert into rerankdb.interactions (user_id, item_id, kind) values (%s, %s, 'like')",
                    [user, item],
                )
                t0 = time.perf_counter()
                while score(reader, user, item) == before:
                    time.sleep(0.0005)
                out[e] = (time.perf_counter() - t0) * 1000
                time.sleep(float(rng.uniform(0, 0.05)))
    finally:
        worker.request_stop()
        thread.join()
    return out


def fold_rate(conn: psycopg.Connection[Any], dim: int, n: int, users: int, items: int, seed: int) -> float:
    rng = np.random.default_rng(seed)
    with conn.cursor().copy("copy rerankdb.interactions (user_id, item_id, kind) from stdin") as cp:
        for u, i in zip(
            rng.integers(1, users + 1, n).tolist(), rng.integers(1, items + 1, n).tolist(), strict=True
        ):
            cp.write_row((u, i, "like"))
    t0 = time.perf_counter()
    report = drain(conn, None, 0.0, dim)
    assert report.interactions_folded == n
    return n / (time.perf_counter() - t0)


def install_baseline(conn: psycopg.Connection[Any]) -> None:
    """Revision 0010's rerank, as public.rerank_0010 (the same tables, the same rights)."""
    text = sqlfiles.read_sql("revisions/0010/functions/rerank.sql").replace(
        "rerankdb.rerank(", "public.rerank_0010("
    )
    conn.execute(re.sub(r"\brerank\.", "rerank_0010.", text))  # its own name qualifies its arguments


def rerank_ms(
    conn: psycopg.Connection[Any], fn: str, users: int, cands: list[np.ndarray], repeats: int
) -> np.ndarray:
    """Server milliseconds (EXPLAIN ANALYZE's execution time) of ``repeats`` calls."""
    out = np.empty(repeats)
    for r in range(repeats):
        row = conn.execute(
            f"explain (analyze, format json) select * from {fn}(%s, %s)",
            [1 + r % users, db.BigintArray(cands[r % len(cands)])],
        ).fetchone()
        assert row is not None
        out[r] = row[0][0]["Execution Time"]
    return out


def inference(repeats: int) -> list[list[Any]]:
    model = sequence.SequenceModel(10_000, sequence.SequenceConfig())
    model.eval()
    rng = np.random.default_rng(0)
    seqs = [list(rng.integers(1, 10_001, 50)) for _ in range(256)]
    items = model.item_vectors().detach()
    rows = []
    threads = torch.get_num_threads()
    for batch, n_threads in ((1, 1), (1, threads), (256, threads)):
        torch.set_num_threads(n_threads)
        times = []
        for r in range(repeats):
            chunk = seqs[:batch] if batch > 1 else [seqs[r % 256]]
            t0 = time.perf_counter()
            sequence.user_vectors_with_attention(model, chunk, items=items)
            times.append((time.perf_counter() - t0) * 1000 / batch)
        rows.append(
            [
                f"batch {batch}, {n_threads} thread(s)",
                f"{np.median(times):.3f}",
                f"{1000 / np.median(times):,.0f}",
            ]
        )
    torch.set_num_threads(threads)
    return rows


def run(args: argparse.Namespace) -> None:
    url = fresh_database(args.items, args.seed)
    with db.connect(url, autocommit=True) as conn:
        print(f"machine: {machine(conn)}; torch {torch.__version__}, {torch.get_num_threads()} threads")
        dim = int(conn.execute("select rerankdb.dimension()").fetchone()[0])  # type: ignore[index]
        chains(conn, args.users, args.items, args.length, args.seed)
        drain(conn, None, 0.0, dim)
        t0 = time.perf_counter()
        report = train(conn, None, 0.0, dim, sequence=True, sequence_config=CONFIG)
        print(
            f"{args.users:,} users x {args.length} interactions, {args.items:,} items; trained "
            f"{report.sequence_epochs} epochs of the sequence model in {time.perf_counter() - t0:.0f} s\n"
        )
        install_baseline(conn)
        rows_fresh, rows_fold = [], []
        rates: dict[bool, list[float]] = {True: [], False: []}
        fresh: dict[bool, np.ndarray] = {}
        for on in (False, True, False, True):  # interleaved: drift hits both alike
            set_model(conn, on)
            if on:
                user_refresh.rebuild_all(conn, None, 0.0, dim)  # every user's sequence vector
            rates[on].append(
                fold_rate(conn, dim, args.fold, args.users, args.items, args.seed + len(rates[on]))
            )
            if on not in fresh:
                fresh[on] = freshness(url, args.events, args.users, args.items, args.seed)
        for on in (False, True):
            p50, p99 = p50_p99(fresh[on])
            rows_fresh.append(["on" if on else "off (baseline)", len(fresh[on]), f"{p50:.1f}", f"{p99:.1f}"])
            rows_fold.append(
                [
                    "on" if on else "off (baseline)",
                    f"{np.mean(rates[on]):,.0f}",
                    ", ".join(f"{r:,.0f}" for r in rates[on]),
                ]
            )
        print("Freshness: committed INSERT to a changed rerank score, ms (users with a history)")
        print(table(["sequence space", "events", "p50", "p99"], rows_fresh))
        print(f"p50 ratio on / off: {np.median(fresh[True]) / np.median(fresh[False]):.2f}x\n")
        print(f"Fold throughput, batches of {args.fold:,} interactions of users with histories")
        print(table(["sequence space", "interactions/s (mean)", "each run"], rows_fold))
        print(f"ratio on / off: {np.mean(rates[True]) / np.mean(rates[False]):.2f}x\n")

        rng = np.random.default_rng(args.seed)
        rows_rerank = []
        for n in (100, 1000):
            cands = [rng.choice(args.items, n, replace=False) + 1 for _ in range(50)]
            base = rerank_ms(conn, "public.rerank_0010", args.users, cands, 20)  # warm-up
            got: dict[str, np.ndarray] = {}
            for label, fn, weight in (
                ("0010's rerank (baseline)", "public.rerank_0010", 0.3),
                ("rerank, sequence_weight 0", "rerankdb.rerank", 0.0),
                ("rerank, sequence_weight 0.3", "rerankdb.rerank", 0.3),
            ):
                conn.execute("update rerankdb.settings set sequence_weight = %s", [weight])
                got[label] = rerank_ms(conn, fn, args.users, cands, args.repeats)
            base = got["0010's rerank (baseline)"]
            for label, ms in got.items():
                p50, p99 = p50_p99(ms)
                rows_rerank.append([n, label, f"{p50:.3f}", f"{p99:.3f}", f"{p50 / np.median(base):.2f}x"])
        print("rerank server time (EXPLAIN ANALYZE), ms")
        print(table(["candidates", "function", "p50", "p99", "p50 vs 0010"], rows_rerank))
    print("\nThe model's CPU inference per user (newest 50 items, with the attention explain reads), ms")
    print(table(["batch", "ms per user (p50)", "users/s"], inference(args.repeats)))


def add_arguments(sub: Any) -> None:
    s = sub.add_parser("sequence", help="the sequence space's costs beside it off, same run")
    s.add_argument("--items", type=int, default=10_000)
    s.add_argument("--users", type=int, default=2_000)
    s.add_argument("--length", type=int, default=20, help="interactions per user in the log")
    s.add_argument("--fold", type=int, default=20_000, help="interactions per fold batch measured")
    s.add_argument("--events", type=int, default=200, help="freshness events per mode")
    s.add_argument("--repeats", type=int, default=300)
    s.add_argument("--seed", type=int, default=31)
    s.set_defaults(run=run)
