"""Benchmark of rerankdb.rerank against the two obvious alternatives.

Loads N synthetic item vectors and U user vectors (random normal, dimension
of the schema) into a database of its own, then measures for 10, 100 and
1000 candidates (uniformly random item ids, a random user per call):

* server execution time (EXPLAIN ANALYZE, TIMING OFF; planning excluded, which
  flatters the naive query) of ``rerankdb.rerank`` and of the naive SQL
  ``... where item_id = any($2) order by embedding <=> user_vector``;
* wall-clock latency seen by a Python client for rerankdb (Client.rerank),
  the naive SQL, and client-side reranking (fetch the vectors, score in numpy);
* server time of hybrid reranking (text + collaborative vectors) beside
  text-only, the same candidates;
* server time with user vectors stored out of line (TOAST) and inline;
* reranks/second with 1 and 2 client processes.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import re
import time
from functools import partial
from typing import Any

import numpy as np
import psycopg
from psycopg import sql

from rerankdb import Client, db, migrate
from rerankdb.bench.common import bench_url, machine, p50_p99, table, timed
from rerankdb.config import Settings

NAIVE_SQL = """
select v.item_id, 1 - (v.embedding <=> u.embedding) as score
from rerankdb.item_vectors v
join rerankdb.user_vectors u on u.user_id = %s
where v.item_id = any(%s::bigint[])
order by v.embedding <=> u.embedding
"""
RERANK_SQL = "select * from rerankdb.rerank(%s, %s::bigint[])"


def load(url: str, n_items: int, n_users: int, seed: int) -> None:
    """Install the schema and load vectors, unless an identical load is already there."""
    migrate.upgrade(url)
    with Client(url) as client:
        st = client.status()
        if (st.item_vectors, st.user_vectors) == (n_items, n_users):
            print(f"reusing {n_items:,} item and {n_users:,} user vectors already loaded")
            return
        with db.connect(url, autocommit=True) as conn:
            conn.execute("truncate rerankdb.items, rerankdb.user_vectors cascade")
        rng = np.random.default_rng(seed)
        dim = client.dimension
        t0 = time.perf_counter()
        step = 10_000
        for lo in range(0, n_items, step):
            ids = list(range(lo + 1, min(lo + step, n_items) + 1))
            client.upsert_items({"item_id": i, "content": f"synthetic item {i}"} for i in ids)
            client.set_item_vectors(ids, rng.standard_normal((len(ids), dim), dtype=np.float32))
            print(
                f"  loaded {ids[-1]:,}/{n_items:,} item vectors ({time.perf_counter() - t0:.0f} s)", end="\r"
            )
        client.set_user_vectors(
            list(range(1, n_users + 1)), rng.standard_normal((n_users, dim), dtype=np.float32)
        )
        print(f"\nloaded {n_items:,} item and {n_users:,} user vectors in {time.perf_counter() - t0:.0f} s")
    with db.connect(url, autocommit=True) as conn:
        conn.execute("vacuum analyze rerankdb.item_vectors")
        conn.execute("vacuum analyze rerankdb.user_vectors")


def prewarm(url: str) -> None:
    """Read every vector through the primary keys once, so that the first figure
    measured does not pay for filling shared_buffers (a sequential scan of a
    big table would go through a small ring buffer instead)."""
    with db.connect(url, autocommit=True) as conn:
        conn.execute("set enable_seqscan = off")
        conn.execute("set enable_bitmapscan = off")
        for table, key in (
            ("item_vectors", "item_id"),
            ("item_rank", "item_id"),
            ("user_vectors", "user_id"),
        ):
            conn.execute(
                sql.SQL(
                    "select sum(vector_dims(embedding)) from rerankdb.{} where {} > -9223372036854775808"
                ).format(sql.Identifier(table), sql.Identifier(key))
            )


class Workload:
    """Random (user, candidates) pairs, reproducible from a seed."""

    def __init__(self, n_items: int, n_users: int, n_candidates: int, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.n_items, self.n_users, self.n = n_items, n_users, n_candidates

    def next(self) -> tuple[int, db.BigintArray]:
        """A user and candidates, as the binary id array every method receives."""
        cands = self.rng.choice(self.n_items, self.n, replace=False) + 1
        return int(self.rng.integers(1, self.n_users + 1)), db.BigintArray(cands)


def server_ms(conn: psycopg.Connection[Any], sql: str, work: Workload, repeats: int) -> np.ndarray:
    explain = "explain (analyze, timing off, summary on) " + sql
    for _ in range(10):
        conn.execute(explain, work.next()).fetchall()
    out = np.empty(repeats)
    for i in range(repeats):
        text = "\n".join(r[0] for r in conn.execute(explain, work.next()).fetchall())
        m = re.search(r"Execution Time: ([\d.]+) ms", text)
        assert m, text
        out[i] = float(m.group(1))
    return out


def workload(args: argparse.Namespace, n: int) -> Workload:
    """The run's workload for n candidates: the same sequence for every method measured with it."""
    return Workload(args.items, args.users, n, args.seed + n)


def server_p50_p99(
    conn: psycopg.Connection[Any], sql: str, args: argparse.Namespace, n: int
) -> tuple[float, float]:
    return p50_p99(server_ms(conn, sql, workload(args, n), args.repeats))


def client_side(conn: psycopg.Connection[Any], user: int, cands: db.BigintArray) -> list[tuple[int, float]]:
    """The baseline an application writes without rerankdb: fetch, score in numpy, sort."""
    urow = conn.execute("select embedding from rerankdb.user_vectors where user_id = %s", [user]).fetchone()
    rows = conn.execute(
        "select item_id, embedding from rerankdb.item_vectors where item_id = any(%s::bigint[])",
        [cands],
        binary=True,  # the fastest transfer of vectors psycopg offers
    ).fetchall()
    if urow is None or not rows:
        return [(int(c), 0.0) for c in cands.values]
    u = urow[0].to_numpy()
    ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    mat = np.stack([r[1].to_numpy() for r in rows])
    scores = mat @ u / (np.linalg.norm(mat, axis=1) * np.linalg.norm(u))
    order = np.argsort(-scores, kind="stable")
    return list(zip(ids[order].tolist(), scores[order].tolist(), strict=True))


def _throughput_worker(args: tuple[str, str, int, int, int, float, int]) -> int:
    url, method, n_items, n_users, n, seconds, seed = args
    work = Workload(n_items, n_users, n, seed)
    calls = 0
    if method == "rerankdb":
        with Client(url, max_connections=1) as client:
            end = time.perf_counter() + seconds
            while time.perf_counter() < end:
                user, cands = work.next()
                client.rerank(user, cands.values)
                calls += 1
    else:
        with db.connect(url, autocommit=True) as conn:
            end = time.perf_counter() + seconds
            while time.perf_counter() < end:
                conn.execute(NAIVE_SQL, work.next()).fetchall()
                calls += 1
    return calls


def throughput(url: str, method: str, procs: int, n: int, args: argparse.Namespace) -> float:
    jobs = [(url, method, args.items, args.users, n, args.seconds, args.seed + p) for p in range(procs)]
    with mp.get_context("spawn").Pool(procs) as pool:
        calls = pool.map(_throughput_worker, jobs)
    return float(sum(calls)) / float(args.seconds)


def latency_tables(url: str, args: argparse.Namespace) -> None:
    with db.connect(url, autocommit=True) as conn, Client(url, max_connections=1) as client:
        print(f"machine: {machine(conn)}")
        print(f"data: {args.items:,} items x {client.dimension}-d, {args.users:,} users; seed {args.seed}\n")

        def ours(w: Workload) -> Any:
            user, cands = w.next()
            return client.rerank(user, cands.values)

        def naive(w: Workload) -> Any:
            return conn.execute(NAIVE_SQL, w.next()).fetchall()

        def numpy_side(w: Workload) -> Any:
            return client_side(conn, *w.next())

        srv_rows, wall_rows = [], []
        for n in args.sizes:
            work = workload(args, n)
            o50, o99 = p50_p99(server_ms(conn, RERANK_SQL, work, args.repeats))
            n50, n99 = p50_p99(server_ms(conn, NAIVE_SQL, work, args.repeats))
            srv_rows.append([n, f"{o50:.3f}", f"{o99:.3f}", f"{n50:.3f}", f"{n99:.3f}", f"{n50 / o50:.2f}x"])
            wall = {
                name: p50_p99(timed(partial(fn, work), args.repeats))
                for name, fn in (("rerankdb", ours), ("naive", naive), ("client", numpy_side))
            }
            wall_rows.append(
                [
                    n,
                    *(f"{wall[m][0]:.3f} / {wall[m][1]:.3f}" for m in ("rerankdb", "naive", "client")),
                    f"{wall['naive'][0] / wall['rerankdb'][0]:.2f}x",
                    f"{wall['client'][0] / wall['rerankdb'][0]:.2f}x",
                ]
            )
    print("Server execution time, ms (EXPLAIN ANALYZE; planning excluded)")
    headers = ["candidates", "rerank p50", "rerank p99", "naive p50", "naive p99", "naive / rerank"]
    print(table(headers, srv_rows))
    print("\nWall-clock latency from Python, ms, p50 / p99")
    headers = ["candidates", "rerankdb", "naive SQL", "client-side numpy", "vs naive", "vs client"]
    print(table(headers, wall_rows))


def throughput_table(url: str, args: argparse.Namespace) -> None:
    rows = []
    for n in args.throughput_sizes:
        for procs in (1, 2):
            ours = throughput(url, "rerankdb", procs, n, args)
            naive = throughput(url, "naive", procs, n, args)
            rows.append([n, procs, f"{ours:,.0f}", f"{naive:,.0f}", f"{ours / naive:.2f}x"])
    print(f"\nReranks per second ({args.seconds:g} s per figure)")
    print(table(["candidates", "connections", "rerankdb", "naive SQL", "ratio"], rows))


def hybrid_table(url: str, args: argparse.Namespace) -> None:
    """Text-only reranking (before training) against hybrid (after), same candidates, same run.

    Text only is measured plain (as in the core benchmark) and centered;
    hybrid with both spaces centered (collab_centering 0.3, so that the
    collaborative centering is paid for too).
    """
    rng = np.random.default_rng(args.seed)
    k = args.collab_dim
    text: dict[int, float] = {}
    centered: dict[int, float] = {}
    rows = []
    with db.connect(url, autocommit=True) as conn:
        conn.execute("update rerankdb.item_rank set collab = null, support = null where collab is not null")
        conn.execute("update rerankdb.user_vectors set collab = null where collab is not null")
        conn.execute("vacuum full rerankdb.item_rank")
        conn.execute("analyze rerankdb.item_rank")
        conn.execute("select rerankdb.refresh_centers()")
        prewarm(url)  # vacuum full wrote a new table: not in shared_buffers yet
        for n in args.sizes:
            conn.execute("update rerankdb.settings set text_centering = 0")
            text[n], _ = server_p50_p99(conn, RERANK_SQL, args, n)
            conn.execute("update rerankdb.settings set text_centering = 1")
            centered[n], _ = server_p50_p99(conn, RERANK_SQL, args, n)
        # What a training leaves: a k-d collaborative vector for every item and user.
        with conn.transaction():
            conn.execute("create temp table _c (item_id bigint, collab vector) on commit drop")
            with conn.cursor().copy("copy _c from stdin with (format binary)") as cp:
                cp.set_types(["int8", "vector"])
                for item in range(1, args.items + 1):
                    cp.write_row((item, _unit(rng, k)))
            conn.execute(
                "update rerankdb.item_rank r set collab = c.collab, support = 10 from _c c where r.item_id = c.item_id"
            )
        with conn.cursor() as cur:
            cur.executemany(
                "update rerankdb.user_vectors set collab = %s where user_id = %s",
                [(_unit(rng, k), u) for u in range(1, args.users + 1)],
            )
        conn.execute("select rerankdb.refresh_centers()")
        conn.execute(
            "update rerankdb.settings set collab_weight = 0.7, text_centering = 1, collab_centering = 0.3"
        )
        conn.execute("vacuum analyze rerankdb.item_rank")
        prewarm(url)
        for n in args.sizes:
            hyb50, hyb99 = server_p50_p99(conn, RERANK_SQL, args, n)
            rows.append(
                [
                    n,
                    f"{text[n]:.3f}",
                    f"{centered[n]:.3f}",
                    f"{hyb50:.3f}",
                    f"{hyb99:.3f}",
                    f"{centered[n] / text[n]:.2f}x",
                    f"{hyb50 / text[n]:.2f}x",
                ]
            )
        conn.execute("update rerankdb.item_rank set collab = null, support = null")
        conn.execute("update rerankdb.user_vectors set collab = null")
        conn.execute(
            "update rerankdb.settings set collab_centering = default, text_center = null, collab_center = null"
        )
        conn.execute("vacuum full rerankdb.item_rank")  # leave it as compact as it was
        conn.execute("analyze rerankdb.item_rank")
    print(f"\nHybrid reranking ({k}-d collaborative vectors for every item and user), server ms")
    headers = [
        "candidates",
        "text-only p50",
        "text centered p50",
        "hybrid centered p50",
        "hybrid p99",
        "centered / text",
        "hybrid / text",
    ]
    print(table(headers, rows))


def toast_table(url: str, args: argparse.Namespace) -> None:
    """Users whose text vector lives out of line (TOAST) against inline ones.

    A row over 2 kB is TOASTed, its largest vector moved out of line: here a
    128-d collaborative vector pushes the 384-d text vector out (larger text
    dimensions are out of line on their own).  rerankdb.rerank copies the
    user's vectors once per call; the naive SQL reads the pointer again for
    every candidate.  No item has a collaborative vector here, so both rank
    by text alone.
    """
    rng = np.random.default_rng(args.seed)
    figures: dict[tuple[str, int], float] = {}
    with db.connect(url, autocommit=True) as conn:
        dim = int(conn.execute("select dim from rerankdb.config").fetchone()[0])  # type: ignore[index]

        def rewrite(collab_dim: int | None) -> int:
            with conn.cursor() as cur:
                cur.executemany(
                    "update rerankdb.user_vectors set collab = %s,"
                    " embedding = subvector(embedding, 1, vector_dims(embedding)) where user_id = %s",
                    [
                        (None if collab_dim is None else _unit(rng, collab_dim), u)
                        for u in range(1, args.users + 1)
                    ],
                )
            conn.execute("vacuum analyze rerankdb.user_vectors")
            prewarm(url)
            row = conn.execute("select min(pg_column_size(embedding)) from rerankdb.user_vectors").fetchone()
            return int(row[0]) if row else 0

        for state, collab_dim in (("inline", None), ("toasted", 128), ("inline again", None)):
            stored = rewrite(collab_dim)
            where = "in the row" if stored > 4 * dim + 4 else "out of line (TOAST)"
            print(f"user vectors {state}: text vectors {where}")
            for n in args.sizes:
                for name, q in (("rerank", RERANK_SQL), ("naive", NAIVE_SQL)):
                    figures[(f"{name} {state}", n)] = server_p50_p99(conn, q, args, n)[0]
    rows = []
    for n in args.sizes:
        f = {k: v for (k, m), v in figures.items() if m == n}
        inline = {m: (f[f"{m} inline"] + f[f"{m} inline again"]) / 2 for m in ("rerank", "naive")}
        rows.append(
            [
                n,
                f"{inline['rerank']:.3f}",
                f"{f['rerank toasted']:.3f}",
                f"{f['rerank toasted'] / inline['rerank']:.2f}x",
                f"{inline['naive']:.3f}",
                f"{f['naive toasted']:.3f}",
                f"{f['naive toasted'] / inline['naive']:.2f}x",
            ]
        )
    print("\nUser vectors in TOAST against inline (mean of before and after), server ms p50")
    headers = [
        "candidates",
        "rerank inline",
        "rerank toasted",
        "ratio",
        "naive inline",
        "naive toasted",
        "ratio",
    ]
    print(table(headers, rows))


def _unit(rng: np.random.Generator, k: int) -> np.ndarray:
    v = rng.standard_normal(k).astype(np.float32)
    return v / np.linalg.norm(v)


def run(args: argparse.Namespace) -> None:
    url = args.url or bench_url(Settings.from_env())
    load(url, args.items, args.users, args.seed)
    prewarm(url)
    latency_tables(url, args)
    if args.collab_dim:
        hybrid_table(url, args)
    toast_table(url, args)
    throughput_table(url, args)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--url", help="an existing database (default: a 'rerankdb_bench' database)")
    p.add_argument("--items", type=int, default=100_000)
    p.add_argument("--users", type=int, default=1_000)
    p.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 1000])
    p.add_argument("--throughput-sizes", type=int, nargs="+", default=[100, 1000])
    p.add_argument("--repeats", type=int, default=300, help="measured calls per figure")
    p.add_argument("--seconds", type=float, default=3.0, help="duration of each throughput figure")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument(
        "--collab-dim", type=int, default=64, help="hybrid figures with k-d collab vectors; 0: skip"
    )
