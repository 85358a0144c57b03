"""``python -m rerankdb.bench loads``: a history load and a compaction, in sets and per row.

Two databases with the same catalog (random item vectors, brought): one at
head, one at revision 0011, whose triggers check and queue each inserted
interaction, and queue a rebuild for each deleted one, row by row (the
baseline: the per-row path, with the same code above it).  The same file is
loaded into each, alternating (``rerankdb load interactions``, all of it
checked and queued as any insert); then each database folds its log and
compacts all of it (``rerankdb compact``, cutoff now), timed.

What the per-row path cost beyond the triggers (the staged rows' check,
which called a function per row) is measured by ``python -m cProfile`` on the
load; docs/benchmarks.md gives both.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from rerankdb import db, embedded, migrate
from rerankdb.bench.common import machine, table
from rerankdb.bench.scale import write_history
from rerankdb.bench.worker import seed_catalog
from rerankdb.compact import compact
from rerankdb.config import Settings
from rerankdb.drain import drain
from rerankdb.load import load_interactions

BASELINE = "0011"  # the last revision whose log triggers run per row
DIM = 384


def database(name: str, revision: str, items: int, seed: int) -> str:
    url = db.create_database(embedded.resolve_url(Settings.from_env()), name, replace=True)
    migrate.upgrade(url, revision=revision, dim=DIM)
    seed_catalog(url, items, seed)
    return url


def timed_load(url: str, path: Path) -> float:
    with db.connect(url, autocommit=True) as conn:
        report = load_interactions(conn, path)
        return report.rows / report.seconds


def fold_all(url: str) -> int:
    with db.connect(url, autocommit=True) as conn:
        folded = 0
        while True:
            done = drain(conn, None, 0.0, DIM).interactions_folded
            if not done:
                return folded
            folded += done


def timed_compact(url: str) -> tuple[int, float]:
    with db.connect(url, autocommit=True) as conn:
        report = compact(conn, None, 0.0, DIM, datetime.now(timezone.utc))
        return report.interactions, report.seconds


def run(args: argparse.Namespace) -> None:
    urls = {
        "head (per statement)": database("rerankdb_bench_loads_head", "head", args.items, args.seed),
        f"{BASELINE} (per row)": database("rerankdb_bench_loads_rows", BASELINE, args.items, args.seed),
    }
    with tempfile.TemporaryDirectory() as tmp:
        path = write_history(Path(tmp), args.items, args.users, args.rows, args.seed)
        with db.connect(next(iter(urls.values())), autocommit=True) as conn:
            print(machine(conn))
        rates: dict[str, list[float]] = {k: [] for k in urls}
        for r in range(args.rounds):
            for label, url in urls.items():
                if r:
                    with db.connect(url, autocommit=True) as conn:
                        conn.execute("truncate rerankdb.interactions cascade")
                rates[label].append(timed_load(url, path))
    rows = []
    base = max(rates[f"{BASELINE} (per row)"])
    for label, got in rates.items():
        best = max(got)
        rows.append([label, f"{args.rows:,}", " / ".join(f"{x:,.0f}" for x in got), f"{best / base:.2f}x"])
    print(f"\nrerankdb load interactions: {args.rows:,} rows (CSV), rows/s per round, alternating")
    print(table(["schema", "rows", "rows/s", "best vs per row"], rows))

    out = []
    seconds: dict[str, float] = {}
    for label, url in urls.items():
        t0 = time.perf_counter()
        folded = fold_all(url)
        fold_s = time.perf_counter() - t0
        moved, seconds[label] = timed_compact(url)
        out.append([label, f"{folded:,}", f"{fold_s:.1f}", f"{moved:,}", f"{seconds[label]:.1f}"])
    base_s = seconds[f"{BASELINE} (per row)"]
    for row, label in zip(out, urls, strict=True):
        row.append(f"{base_s / seconds[label]:.2f}x")
    print("\nrerankdb compact (cutoff now: the whole log) after folding it")
    print(table(["schema", "folded", "fold s", "rows compacted", "compact s", "speed vs per row"], out))


def add_arguments(sub: Any) -> None:
    p = sub.add_parser("loads", help="a history load and a compaction, per statement vs per row")
    p.add_argument("--rows", type=int, default=500_000, help="interactions in the file")
    p.add_argument("--items", type=int, default=10_000)
    p.add_argument("--users", type=int, default=5_000)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--seed", type=int, default=17)
    p.set_defaults(run=run)
