"""``python -m rerankdb.bench short-term``: what the short-term blend costs rerank.

On the rerank benchmark's database (N item and U user vectors), with a k-d
collaborative vector for every item and user and both spaces centered
(what a training leaves), server execution time (EXPLAIN ANALYZE, TIMING
OFF) for 10, 100 and 1000 candidates of:

* revision 0005's rerank (today's hybrid), installed beside the current one
  from its frozen file as ``rerankdb._bench_rerank_0005``, on user rows
  without short-term vectors, as 0005 stored them;
* the current rerank on the same rows (no short-term vector: the blend is
  skipped);
* the current rerank once every user also has short-term text and
  collaborative vectors and both blend weights are 0.5: the blend formed once
  per call.

The three are measured in alternating rounds on the same candidate lists, so
a drift of the machine hits them alike.  The database is left as it was.
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np
import psycopg
from psycopg import sql

from rerankdb import db, sqlfiles
from rerankdb.bench import rerank as bench_rerank
from rerankdb.bench.common import bench_url, machine, table
from rerankdb.config import Settings

OLD = "rerankdb._bench_rerank_0005"
OLD_NAME = sql.Identifier(*OLD.split("."))
ROUNDS = 3


def install_0005(conn: psycopg.Connection[Any]) -> None:
    text = sqlfiles.read_sql("revisions/0005/functions/rerank.sql")
    renamed = text.replace("function rerankdb.rerank(", f"function {OLD}(").replace(
        "rerank.user_id", "_bench_rerank_0005.user_id"
    )
    assert renamed.count(OLD) == 1 and "_bench_rerank_0005.user_id" in renamed
    conn.execute(renamed)


def fill(
    conn: psycopg.Connection[Any], columns: list[tuple[str, str]], ids: range, k: int, seed: int
) -> None:
    """Random unit vectors into (table, column) for every id (k-d; 'dim' for the schema's)."""
    rng = np.random.default_rng(seed)
    dim = int(conn.execute("select rerankdb.dimension()").fetchone()[0])  # type: ignore[index]
    for tbl, col in columns:
        key = "item_id" if tbl == "item_rank" else "user_id"
        size = dim if col.startswith("short_embedding") else k
        vecs = rng.standard_normal((len(ids), size)).astype(np.float32)
        vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
        with conn.transaction():
            conn.execute("create temp table _v (id bigint, v vector) on commit drop")
            with conn.cursor().copy("copy _v from stdin with (format binary)") as cp:
                cp.set_types(["int8", "vector"])
                for i, v in zip(ids, vecs, strict=True):
                    cp.write_row((i, v))
            extra = ", support = 10" if tbl == "item_rank" else ""
            conn.execute(
                psycopg.sql.SQL(
                    "update rerankdb.{} t set {} = _v.v" + extra + " from _v where t.{} = _v.id"
                ).format(
                    psycopg.sql.Identifier(tbl), psycopg.sql.Identifier(col), psycopg.sql.Identifier(key)
                )
            )


def measure(
    conn: psycopg.Connection[Any], args: argparse.Namespace, n: int, setup: list[tuple[str, str]]
) -> list[float]:
    """p50 server ms of each (label, sql) in alternating rounds, same workload each."""
    samples: list[list[float]] = [[] for _ in setup]
    for r in range(ROUNDS):
        for j, (settings_sql, query) in enumerate(setup):
            conn.execute(settings_sql)
            work = bench_rerank.Workload(args.items, args.users, n, args.seed + n + r)
            samples[j] += bench_rerank.server_ms(conn, query, work, args.repeats).tolist()
    return [float(np.percentile(s, 50)) for s in samples]


def run(args: argparse.Namespace) -> None:
    url = args.url or bench_url(Settings.from_env())
    bench_rerank.load(url, args.items, args.users, args.seed)
    k = args.collab_dim
    with db.connect(url, autocommit=True) as conn:
        print(machine(conn))
        install_0005(conn)
        fill(conn, [("user_vectors", "collab")], range(1, args.users + 1), k, 1)
        fill(conn, [("item_rank", "collab")], range(1, args.items + 1), k, 2)
        conn.execute("select rerankdb.refresh_centers()")
        conn.execute(
            "update rerankdb.settings set collab_weight = 0.7, text_centering = 1, collab_centering = 0.3"
        )
        conn.execute("vacuum analyze rerankdb.item_rank")
        conn.execute("vacuum full rerankdb.user_vectors")
        bench_rerank.prewarm(url)
        old_sql = sql.SQL("select * from {}(%s, %s::bigint[])").format(OLD_NAME).as_string(conn)
        blend_off = "update rerankdb.settings set short_weight = 0.5, collab_short_weight = 0.5"
        before = {
            n: measure(conn, args, n, [(blend_off, old_sql), (blend_off, bench_rerank.RERANK_SQL)])
            for n in args.sizes
        }
        fill(
            conn,
            [("user_vectors", "short_embedding"), ("user_vectors", "short_collab")],
            range(1, args.users + 1),
            k,
            3,
        )
        conn.execute("vacuum full rerankdb.user_vectors")
        bench_rerank.prewarm(url)
        rows = []
        for n in args.sizes:
            old, plain = before[n]
            (with_short,) = measure(conn, args, n, [(blend_off, bench_rerank.RERANK_SQL)])
            rows.append([n, f"{old:.3f}", f"{plain:.3f}", f"{with_short:.3f}", f"{with_short / old:.2f}x"])
        conn.execute(sql.SQL("drop function {}(bigint, bigint[], integer)").format(OLD_NAME))
        conn.execute(
            "update rerankdb.user_vectors set collab = null, short_embedding = null, short_collab = null"
        )
        conn.execute("update rerankdb.item_rank set collab = null, support = null")
        conn.execute(
            "update rerankdb.settings set collab_weight = default, collab_centering = default,"
            " short_weight = default, collab_short_weight = default, text_center = null, collab_center = null"
        )
        conn.execute("vacuum full rerankdb.item_rank")
        conn.execute("vacuum full rerankdb.user_vectors")
    print(
        f"\nShort-term blend: rerank server ms (p50 of {ROUNDS} alternating rounds of {args.repeats} calls), "
        f"{args.items:,} items, {args.users:,} users, {k}-d collaborative vectors, both spaces centered"
    )
    headers = [
        "candidates",
        "0005 hybrid",
        "now, no short-term vectors",
        "now, with short-term blend",
        "blend / 0005",
    ]
    print(table(headers, rows))


def add_arguments(sub: Any) -> None:
    p = sub.add_parser("short-term", help="rerank latency with the short-term blend vs revision 0005's")
    p.add_argument("--url", help="an existing database (default: the rerank benchmark's)")
    p.add_argument("--items", type=int, default=100_000)
    p.add_argument("--users", type=int, default=1_000)
    p.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 1000])
    p.add_argument("--repeats", type=int, default=200, help="measured calls per figure and round")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--collab-dim", type=int, default=64)
    p.set_defaults(run=run)
