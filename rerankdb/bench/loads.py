"""``python -m rerankdb.bench loads``: a history load and a compaction, in sets and per row.

Two databases with the same catalog (random item vectors, brought): one at
head, one at revision 0011, whose triggers check and queue each inserted
interaction, and queue a rebuild for each deleted one, row by row (the
baseline: the per-row path).  The same file is loaded into each,
alternating (``rerankdb load interactions``, all of it checked and queued
as any insert); into the baseline also as revision 0011's code loaded it,
its check of the staged rows calling ``interaction_problem`` for every row
(OLD_STAGE_CHECK).  Then the worker drains each database (at head a large
load queues its users for a rebuild, at 0011 every row for a fold) and
compacts all of it (``rerankdb compact``, cutoff now), timed.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from rerankdb import db, embedded, load, migrate
from rerankdb.bench.common import machine, table
from rerankdb.bench.scale import write_history
from rerankdb.bench.worker import seed_catalog
from rerankdb.compact import compact
from rerankdb.config import Settings
from rerankdb.drain import drain
from rerankdb.sqlfiles import Queries

BASELINE = "0011"  # the last revision whose log triggers run per row
DIM = 384
# Revision 0011's check of the staged interactions (sql/queries/load.sql then): a
# function call per row.
OLD_STAGE_CHECK = """
select s.line,
       case when p.problem like 'weight%%' then 'weight' else 'occurred_at' end,
       p.problem
from _load_interactions s
join rerankdb.interaction_kinds k on k.kind = s.kind
cross join lateral (
    select rerankdb.interaction_problem(coalesce(s.occurred_at, now()), coalesce(s.weight, k.weight)) as problem
) p
where p.problem is not null
order by s.line
"""


def database(name: str, revision: str, items: int, seed: int) -> str:
    url = db.create_database(embedded.resolve_url(Settings.from_env()), name, replace=True)
    migrate.upgrade(url, revision=revision, dim=DIM)
    seed_catalog(url, items, seed)
    with db.connect(url, autocommit=True) as conn:
        # No autovacuum on the log while it is loaded: an ANALYZE in the middle of a
        # load sees pages but no committed rows, and the per-row path's foreign-key
        # lookups, planned again with those statistics, may then scan a whole index
        # per row (PostgreSQL 18's skip scan on the log's (user_id, occurred_at,
        # interaction_id) index): a 1,000,000-row load of 0011 ran over 15 minutes.
        for table_ in ("interactions", "interaction_queue"):
            conn.execute(f"alter table rerankdb.{table_} set (autovacuum_enabled = false)")
    return url


def timed_load(url: str, path: Path, old_check: bool = False) -> float:
    saved = load.Q
    if old_check:
        load.Q = Queries(saved.file, {**saved, "interactions_stage_problems": OLD_STAGE_CHECK})
    try:
        with db.connect(url, autocommit=True) as conn:
            report = load.load_interactions(conn, path)
            return report.rows / report.seconds
    finally:
        load.Q = saved


def fold_all(url: str) -> tuple[int, int]:
    """Drain until nothing is due: (interactions folded, users rebuilt)."""
    with db.connect(url, autocommit=True) as conn:
        folded = rebuilt = 0
        while True:
            report = drain(conn, None, 0.0, DIM)
            if not report.interactions_folded and not report.users_rebuilt:
                return folded, rebuilt
            folded, rebuilt = folded + report.interactions_folded, rebuilt + report.users_rebuilt


def timed_compact(url: str) -> tuple[int, float]:
    with db.connect(url, autocommit=True) as conn:
        report = compact(conn, None, 0.0, DIM, datetime.now(timezone.utc))
        return report.interactions, report.seconds


def run(args: argparse.Namespace) -> None:
    urls = {
        "head (per statement)": database("rerankdb_bench_loads_head", "head", args.items, args.seed),
        f"{BASELINE} (per row)": database("rerankdb_bench_loads_rows", BASELINE, args.items, args.seed),
    }
    runs = [
        ("head (per statement)", False),
        (f"{BASELINE} (per row)", False),
        (f"{BASELINE} (per row), with 0011's stage check", True),
    ]
    with tempfile.TemporaryDirectory() as tmp:
        path = write_history(Path(tmp), args.items, args.users, args.rows, args.seed)
        with db.connect(next(iter(urls.values())), autocommit=True) as conn:
            print(machine(conn))
        rates: dict[str, list[float]] = {label: [] for label, _ in runs}
        for _ in range(args.rounds):
            for label, old_check in runs:
                url = urls[label.split(",")[0]]
                with db.connect(url, autocommit=True) as conn:
                    conn.execute("truncate rerankdb.interactions cascade")
                rates[label].append(timed_load(url, path, old_check))
    rows = []
    base = max(rates[runs[-1][0]])
    for label, got in rates.items():
        best = max(got)
        rows.append([label, f"{args.rows:,}", " / ".join(f"{x:,.0f}" for x in got), f"{best / base:.2f}x"])
    print(f"\nrerankdb load interactions: {args.rows:,} rows (CSV), rows/s per round, alternating")
    print(table(["schema", "rows", "rows/s", "best vs 0011's whole path"], rows))

    out = []
    seconds: dict[str, float] = {}
    for label, url in urls.items():
        t0 = time.perf_counter()
        folded, rebuilt = fold_all(url)
        fold_s = time.perf_counter() - t0
        moved, seconds[label] = timed_compact(url)
        out.append(
            [label, f"{folded:,}", f"{rebuilt:,}", f"{fold_s:.1f}", f"{moved:,}", f"{seconds[label]:.1f}"]
        )
    base_s = seconds[f"{BASELINE} (per row)"]
    for row, label in zip(out, urls, strict=True):
        row.append(f"{base_s / seconds[label]:.2f}x")
    print("\nthe worker's drain of the loaded log, then rerankdb compact (cutoff now: the whole log)")
    head = ["schema", "folded", "users rebuilt", "drain s", "rows compacted", "compact s", "speed vs per row"]
    print(table(head, out))


def add_arguments(sub: Any) -> None:
    p = sub.add_parser("loads", help="a history load and a compaction, per statement vs per row")
    p.add_argument("--rows", type=int, default=500_000, help="interactions in the file")
    p.add_argument("--items", type=int, default=10_000)
    p.add_argument("--users", type=int, default=5_000)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--seed", type=int, default=17)
    p.set_defaults(run=run)
