"""``python -m rerankdb.bench scale --items N[:halfvec] [--items ...]``: rerankdb at catalog scale.

For each N (installed with ``vector`` storage, or ``halfvec`` where the
argument says so), in a database of its own (``rerankdb_scale_<N>[_halfvec]``,
left in place):

* writes N synthetic items (random normal embeddings of the schema's
  dimension; Parquet when pyarrow is installed, else JSON Lines) and a
  proportional history (N/100 users, N/2 interactions, popular items drawn
  more often) to files, and loads them through ``rerankdb load``
  (:mod:`rerankdb.load`): load time, of which the one HNSW build;
* today's path on the same data, once per run: COPY into the indexed table
  (rerankdb.items, then rerankdb.item_vectors with its HNSW index and
  triggers), for the first ``--baseline-rows`` items; beyond them, its rate
  is extrapolated (a lower bound: an HNSW insert costs more as the graph grows);
* bytes per item: heap, TOAST and indexes of items, item_vectors and
  item_rank, and where they stand against shared_buffers;
* fold throughput: the worker folding the loaded history (no encoder);
* rerank at 100 and 1000 candidates (p50 / p99, wall clock on one
  connection) beside the naive SQL (``order by embedding <=> user``) and
  beside reading the text vector from item_vectors instead of item_rank's copy
  (what storing it once would cost), in alternating rounds; recommend p50.

With several N, a last section (alone: ``--compare-only``) reranks on every database in alternating
rounds, so the ratio of each N's time to the smallest's comes from one run;
where an N is there in both storages, it also gives how far halfvec moves
the scores (max |difference|) and the overlap of the top 20.

Data files are written under ``--tmp`` and removed at the end of each N.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
from psycopg import sql

from rerankdb import db, embedded, load, migrate, sqlfiles
from rerankdb.bench import rerank as bench_rerank
from rerankdb.bench.common import machine, p50_p99, table
from rerankdb.config import STORAGES, Settings
from rerankdb.drain import drain

NAIVE_SQL = bench_rerank.NAIVE_SQL + "limit 20\n"  # k = 20, as rerank's calls here
RERANK_SQL = "select item_id, score from rerankdb.rerank(%s, %s::bigint[], 20)"
JOIN_SQL = "select * from rerankdb._bench_rerank_join(%s, %s::bigint[], 20)"
RECOMMEND_SQL = "select * from rerankdb.recommend(%s, 10)"
BATCH = 50_000


def _parquet() -> Any:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        return None
    return pa, pq


def write_items(path_dir: Path, n: int, dim: int, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    arrow = _parquet()
    if arrow is not None:
        pa, pq = arrow
        path = path_dir / "items.parquet"
        schema = pa.schema(
            [("item_id", pa.int64()), ("content", pa.string()), ("embedding", pa.list_(pa.float32(), dim))]
        )
        with pq.ParquetWriter(path, schema) as w:
            for lo in range(0, n, BATCH):
                ids = np.arange(lo + 1, min(lo + BATCH, n) + 1)
                vecs = rng.standard_normal((len(ids), dim), dtype=np.float32)
                emb = pa.FixedSizeListArray.from_arrays(pa.array(vecs.ravel()), dim)
                w.write_table(
                    pa.table(
                        {"item_id": ids, "content": [f"synthetic item {i}" for i in ids], "embedding": emb},
                        schema=schema,
                    )
                )
        return path
    import json

    path = path_dir / "items.jsonl"
    with path.open("w") as f:
        for lo in range(0, n, BATCH):
            some = range(lo + 1, min(lo + BATCH, n) + 1)
            vecs = rng.standard_normal((len(some), dim), dtype=np.float32).round(6)
            for i, v in zip(some, vecs, strict=True):
                f.write(json.dumps({"item_id": i, "content": f"synthetic item {i}", "embedding": v.tolist()}))
                f.write("\n")
    return path


def write_history(path_dir: Path, n_items: int, n_users: int, n_events: int, seed: int) -> Path:
    rng = np.random.default_rng(seed + 1)
    users = rng.integers(1, n_users + 1, n_events)
    items = (n_items * rng.random(n_events) ** 2).astype(np.int64) + 1  # popular items more often
    start = datetime.now(timezone.utc) - timedelta(days=90)
    seconds = np.sort(rng.random(n_events)) * 89 * 86400
    kinds = np.where(rng.random(n_events) < 0.8, "view", "like")
    path = path_dir / "interactions.csv"
    with path.open("w") as f:
        f.write("user_id,item_id,kind,occurred_at\n")
        t0 = start.timestamp()
        for u, i, k, s in zip(users, items, kinds, seconds, strict=True):
            f.write(f"{u},{i},{k},{t0 + s:.3f}\n")
    return path


def sizes(conn: psycopg.Connection[Any]) -> dict[str, int]:
    """Bytes of each table's heap (with TOAST) and of its indexes."""
    out = {}
    for name in ("items", "item_vectors", "item_rank"):
        row = conn.execute(
            "select pg_table_size(c), pg_indexes_size(c) from (select %s::regclass as c) x",
            (f"rerankdb.{name}",),
        ).fetchone()
        assert row is not None
        out[f"{name} heap"], out[f"{name} indexes"] = int(row[0]), int(row[1])
    row = conn.execute("select pg_relation_size('rerankdb.item_vectors_embedding_hnsw')").fetchone()
    assert row is not None
    out["of which the HNSW index"] = int(row[0])
    return out


def baseline_copy(server: str, items_path: Path, rows: int, dim: int) -> float:
    """Today's path, timed: COPY the first ``rows`` items and vectors into the indexed tables."""
    from rerankdb import filerows

    url = db.create_database(server, "rerankdb_scale_baseline", replace=True)
    migrate.upgrade(url)
    fmt = filerows.detect_format(items_path)
    batch: list[tuple[int, str, np.ndarray]] = []
    with db.connect(url, autocommit=True) as conn:
        t0 = time.perf_counter()
        for rec in filerows.read_records(items_path, fmt):
            assert rec.fields is not None
            f = rec.fields
            batch.append((int(f["item_id"]), f["content"], np.asarray(f["embedding"], dtype=np.float32)))
            if len(batch) == 10_000 or rec.line == rows:
                with conn.transaction():
                    with conn.cursor().copy("copy rerankdb.items (item_id, content) from stdin") as cp:
                        for i, c, _ in batch:
                            cp.write_row((i, c))
                    with conn.cursor().copy(
                        "copy rerankdb.item_vectors (item_id, embedding) from stdin with (format binary)"
                    ) as cp:
                        cp.set_types(["int8", "vector"])
                        for i, _, v in batch:
                            cp.write_row((i, v))
                batch.clear()
                print(
                    f"  today's path: {rec.line:,}/{rows:,} rows, {time.perf_counter() - t0:.0f} s", end="\r"
                )
            if rec.line == rows:
                break
        seconds = time.perf_counter() - t0
    print()
    db.drop_database(server, "rerankdb_scale_baseline")
    return seconds


def install_join_variant(conn: psycopg.Connection[Any]) -> None:
    """rerank reading the text vector from item_vectors and the collaborative one from item_rank:
    what storing the text vector once would cost."""
    src = sqlfiles.read_sql("functions/rerank.sql")
    variant = (
        src.replace("function rerankdb.rerank(", "function rerankdb._bench_rerank_join(")
        .replace(
            "left join rerankdb.item_rank v on v.item_id = c.item_id",
            "left join rerankdb.item_vectors v on v.item_id = c.item_id"
            " left join rerankdb.item_rank r2 on r2.item_id = c.item_id",
        )
        .replace("v.collab", "r2.collab")
        .replace("v.support", "r2.support")
        .replace("v.seq", "r2.seq")
        .replace("from rerankdb.rerank(rerank.user_id", "from rerankdb._bench_rerank_join(rerank.user_id")
        .replace("rerank.user_id", "_bench_rerank_join.user_id")
    )
    conn.execute(variant)


def wall_ms(conn: psycopg.Connection[Any], query: str, params: tuple[Any, ...]) -> float:
    t0 = time.perf_counter()
    conn.execute(query, params).fetchall()
    return (time.perf_counter() - t0) * 1000


def lists(n_items: int, n_users: int, n: int, count: int, seed: int) -> list[tuple[int, db.BigintArray]]:
    rng = np.random.default_rng(seed)
    return [
        (int(rng.integers(1, n_users + 1)), db.BigintArray(rng.choice(n_items, n, replace=False) + 1))
        for _ in range(count)
    ]


def prewarm(conn: psycopg.Connection[Any]) -> None:
    """Read every row's vectors once through the primary keys (not a sequential scan, which
    goes through a small ring buffer), so that they are in shared_buffers where they fit."""
    conn.execute("set enable_seqscan = off")
    conn.execute("set enable_bitmapscan = off")
    for t, key in (("item_rank", "item_id"), ("item_vectors", "item_id"), ("user_vectors", "user_id")):
        conn.execute(
            sql.SQL(
                "select sum(vector_dims(embedding)) from rerankdb.{} where {} > -9223372036854775808"
            ).format(sql.Identifier(t), sql.Identifier(key))
        )
    conn.execute("reset enable_seqscan")
    conn.execute("reset enable_bitmapscan")


def run_one(
    server: str, n: int, storage: str, args: argparse.Namespace, baseline: dict[str, float]
) -> dict[str, Any]:
    users, events = max(n // 100, 10), n // 2
    name = f"rerankdb_scale_{n}" + ("" if storage == "vector" else f"_{storage}")
    url = db.create_database(server, name, replace=True)
    migrate.upgrade(url, storage=storage)
    out: dict[str, Any] = {"n": n, "storage": storage, "label": label(n, storage), "url": url, "users": users}
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp, db.connect(url, autocommit=True) as conn:
        dim = int(conn.execute("select rerankdb.dimension()").fetchone()[0])  # type: ignore[index]
        t0 = time.perf_counter()
        items_path = write_items(Path(tmp), n, dim, args.seed)
        log_path = write_history(Path(tmp), n, users, events, args.seed)
        print(f"{label(n, storage)}: wrote {items_path.name} ({items_path.stat().st_size / 2**20:,.0f} MiB) and "
              f"{events:,} interactions in {time.perf_counter() - t0:.0f} s")  # fmt: skip
        rep = load.load_items(conn, items_path, index="rebuild", build_memory=args.build_memory)
        assert rep.rows == n and rep.index == "rebuilt", rep
        out["load"], out["index"] = rep.seconds, rep.index_seconds
        print(
            f"  rerankdb load items: {rep.seconds:.1f} s, of which the HNSW build {rep.index_seconds:.1f} s"
        )
        if "rows" not in baseline:
            rows = min(n, args.baseline_rows)
            baseline["rows"], baseline["seconds"] = rows, baseline_copy(server, items_path, rows, dim)
        out["baseline"] = baseline["seconds"] * n / baseline["rows"]
        out["baseline_extrapolated"] = baseline["rows"] < n
        rep2 = load.load_interactions(conn, log_path)
        out["load_interactions"] = rep2.seconds
        print(f"  rerankdb load interactions: {rep2.rows:,} in {rep2.seconds:.1f} s")
        t0 = time.perf_counter()
        folded = drain(conn, None, 0.0, dim).interactions_folded
        out["fold_rate"] = folded / (time.perf_counter() - t0)
        print(f"  worker folded {folded:,} interactions: {out['fold_rate']:,.0f}/s")
        conn.execute("vacuum analyze rerankdb.items, rerankdb.item_vectors, rerankdb.item_rank")
        out["sizes"] = sizes(conn)
        install_join_variant(conn)
        prewarm(conn)
        for k in (100, 1000):
            got: dict[str, list[float]] = {"rerank": [], "naive SQL": [], "text once (join)": []}
            work = lists(n, users, k, args.repeats, args.seed + k)
            for rnd in range(args.rounds):
                order = list(got) if rnd % 2 == 0 else list(reversed(got))
                for name in order:
                    q = {"rerank": RERANK_SQL, "naive SQL": NAIVE_SQL, "text once (join)": JOIN_SQL}[name]
                    for w in work[:10]:
                        wall_ms(conn, q, w)  # warm-up
                    got[name] += [wall_ms(conn, q, w) for w in work]
            out[f"rerank{k}"] = {name: p50_p99(v) for name, v in got.items()}
        rec = [wall_ms(conn, RECOMMEND_SQL, (u,)) for u in range(1, 61)]
        out["recommend"] = p50_p99(rec[10:])
    return out


def label(n: int, storage: str) -> str:
    return f"{n:,}" + ("" if storage == "vector" else f" {storage}")


def agreement(
    a: psycopg.Connection[Any], b: psycopg.Connection[Any], n: int, users: int
) -> tuple[float, float]:
    """(mean overlap of the top 20, max |score difference|) of rerank on two databases of the same data."""
    overlap, diff = [], 0.0
    for w in lists(n, users, 1000, 50, 7):
        sa, sb = (
            dict(a.execute(RERANK_SQL, w).fetchall()[:20]),
            dict(b.execute(RERANK_SQL, w).fetchall()[:20]),
        )
        overlap.append(len(sa.keys() & sb.keys()) / max(len(sa), 1))
        both = sa.keys() & sb.keys()
        if both:
            diff = max(diff, max(abs(sa[i] - sb[i]) for i in both))
    return float(np.mean(overlap)), diff


def compare(results: list[dict[str, Any]], args: argparse.Namespace) -> list[tuple[str, float, float]]:
    """rerank at 1000 candidates on every database, alternating, in one run: (label, p50, p99)."""
    conns = [db.connect(r["url"], autocommit=True) for r in results]
    times: list[list[float]] = [[] for _ in results]
    try:
        for c in conns:
            prewarm(c)
        for rnd in range(args.rounds * 2):
            for i in range(len(results)) if rnd % 2 == 0 else reversed(range(len(results))):
                r = results[i]
                work = lists(r["n"], r["users"], 1000, args.repeats, args.seed + rnd)
                for w in work[:10]:
                    wall_ms(conns[i], RERANK_SQL, w)
                times[i] += [wall_ms(conns[i], RERANK_SQL, w) for w in work]
    finally:
        for c in conns:
            c.close()
    return [(r["label"], *p50_p99(t)) for r, t in zip(results, times, strict=True)]


def compare_only(server: str, runs: list[tuple[int, str]], args: argparse.Namespace) -> None:
    """The last section alone, on the databases an earlier run left (after a change of
    shared_buffers, say)."""
    results = []
    for n, storage in runs:
        name = f"rerankdb_scale_{n}" + ("" if storage == "vector" else f"_{storage}")
        url = db.with_database(server, name)
        with db.connect(url, autocommit=True) as c:
            users = int(c.execute("select count(*) from rerankdb.user_vectors").fetchone()[0])  # type: ignore[index]
            if n == runs[0][0]:
                print(machine(c))
        results.append({"n": n, "storage": storage, "label": label(n, storage), "url": url, "users": users})
    cmp = compare(results, args)
    print(table(
        ["items", "p50 ms", "p99 ms", "p50 vs the smallest"],
        [[name, f"{p50:.2f}", f"{p99:.2f}", f"{p50 / cmp[0][1]:.2f}x"] for name, p50, p99 in cmp],
    ))  # fmt: skip


def parse_run(raw: str) -> tuple[int, str]:
    n, _, storage = raw.partition(":")
    storage = storage or "vector"
    if storage not in STORAGES or not n.isdigit() or int(n) < 100:
        raise SystemExit(f"--items takes N or N:halfvec with N >= 100, got {raw!r}")
    return int(n), storage


def run(args: argparse.Namespace) -> None:
    server = embedded.resolve_url(Settings.from_env())
    baseline: dict[str, float] = {}
    runs = sorted({parse_run(raw) for raw in args.items}, key=lambda r: (r[0], r[1] != "vector"))
    if args.compare_only:
        compare_only(server, runs, args)
        return
    results = [run_one(server, n, storage, args, baseline) for n, storage in runs]
    with db.connect(results[0]["url"], autocommit=True) as c:
        print(machine(c))
        shared = c.execute(
            "select setting::bigint * 8192 from pg_settings where name = 'shared_buffers'"
        ).fetchone()
    assert shared is not None
    mib = 2**20
    print("\n## Load (items with embeddings)\n")
    print(table(
        ["items", "rerankdb load", "of which HNSW build", "COPY into the indexed table", "speed-up"],
        [[r["label"], f"{r['load']:.0f} s", f"{r['index']:.0f} s",
          f"{r['baseline']:.0f} s" + (" (extrapolated)" if r["baseline_extrapolated"] else ""),
          f"{r['baseline'] / r['load']:.1f}x"] for r in results],
    ))  # fmt: skip
    print(f"\n(today's path measured on the first {int(baseline['rows']):,} items: "
          f"{baseline['rows'] / baseline['seconds']:,.0f} rows/s)")  # fmt: skip
    print("\n## Bytes per item\n")
    names = list(results[0]["sizes"])
    print(table(
        ["", *[f"{r['label']} items" for r in results]],
        [[name, *[f"{r['sizes'][name] / r['n']:,.0f}" for r in results]] for name in names]
        + [["total", *[f"{sum(v for k, v in r['sizes'].items() if not k.startswith('of')) / r['n']:,.0f}"
                       for r in results]]],
    ))  # fmt: skip
    for r in results:
        total = sum(v for k, v in r["sizes"].items() if not k.startswith("of"))
        rank = r["sizes"]["item_rank heap"] + r["sizes"]["item_rank indexes"]
        print(f"{r['label']} items: {total / mib:,.0f} MiB in all, rerank's working set (item_rank) "
              f"{rank / mib:,.0f} MiB, shared_buffers {shared[0] / mib:,.0f} MiB: "
              f"{'fits' if rank < shared[0] else 'does not fit (read from the OS page cache)'}")  # fmt: skip
    print("\n## Reads, and the worker\n")
    rows = []
    for r in results:
        for k in (100, 1000):
            for name, (p50, p99) in r[f"rerank{k}"].items():
                rows.append([r["label"], k, name, f"{p50:.2f}", f"{p99:.2f}",
                             f"{p50 / r[f'rerank{k}']['rerank'][0]:.2f}x"])  # fmt: skip
    print(table(["items", "candidates", "method", "p50 ms", "p99 ms", "p50 vs rerank"], rows))
    print()
    print(table(
        ["items", "recommend p50 ms", "recommend p99 ms", "interactions loaded", "fold rate"],
        [[r["label"], f"{r['recommend'][0]:.1f}", f"{r['recommend'][1]:.1f}",
          f"{r['n'] // 2:,} in {r['load_interactions']:.0f} s", f"{r['fold_rate']:,.0f}/s"] for r in results],
    ))  # fmt: skip
    if len(results) > 1:
        print("\n## rerank at 1000 candidates, every size in alternating rounds\n")
        cmp = compare(results, args)
        print(table(
            ["items", "p50 ms", "p99 ms", "p50 vs the smallest"],
            [[name, f"{p50:.2f}", f"{p99:.2f}", f"{p50 / cmp[0][1]:.2f}x"] for name, p50, p99 in cmp],
        ))  # fmt: skip
    by = {(r["n"], r["storage"]): r for r in results}
    for (n, storage), r in by.items():
        if storage == "halfvec" and (n, "vector") in by:
            with (
                db.connect(by[n, "vector"]["url"], autocommit=True) as a,
                db.connect(r["url"], autocommit=True) as b,
            ):
                overlap, diff = agreement(a, b, n, r["users"])
            print(f"\n{n:,} items, halfvec against vector: top 20 overlap {overlap:.3f}, "
                  f"max |score difference| {diff:.1e} (1000 candidates, 50 lists)")  # fmt: skip


def add_arguments(sub: Any) -> None:
    p = sub.add_parser("scale", help="load N items from files, then load time, memory and latency at N")
    p.add_argument(
        "--items", action="append", required=True, metavar="N[:halfvec]", help="catalog size (repeatable)"
    )
    p.add_argument("--baseline-rows", type=int, default=100_000, help="items COPYed by today's path")
    p.add_argument(
        "--compare-only",
        action="store_true",
        help="only the last section, on the databases an earlier run left",
    )
    p.add_argument("--build-memory", default="4GB", help="maintenance_work_mem of the index build")
    p.add_argument("--repeats", type=int, default=100, help="rerank calls per method and round")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tmp", default=None, help="where the data files go (default: the system's)")
    p.set_defaults(run=run)
