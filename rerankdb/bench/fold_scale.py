"""``python -m rerankdb.bench fold-scale``: fold throughput by catalog size and by number of users.

What makes folding slower in a bigger deployment, one factor at a time: the
rerank benchmark's database (100,000 random item vectors) is cloned into
``rerankdb_fold_<N>`` for each ``--items`` N, grown to N items where N is
larger (the same vectors again under new ids; the text HNSW index is dropped
in every clone, since a fold never reads it). In each, for each ``--users``
U, the same number of interactions (popular items drawn more often, as
``bench scale`` draws them) is written in one statement and folded by the
worker (no encoder), in alternating rounds. Printed: interactions folded per
second and the ratio to the smallest catalog with the fewest users, beside
the size of ``rerankdb.item_rank`` (what a fold reads per interaction)
against ``shared_buffers``.

The clones are left in place (``--keep``) or dropped at the end.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np
import psycopg

from rerankdb import db, embedded
from rerankdb.bench import rerank as bench_rerank
from rerankdb.bench.common import BENCH_DATABASE, bench_url, machine, table
from rerankdb.config import Settings
from rerankdb.drain import drain

BASE_ITEMS = 100_000  # the rerank benchmark's catalog, grown from

HISTORY = """
insert into rerankdb.interactions (user_id, item_id, kind, occurred_at)
select 1 + floor(random() * %(users)s)::bigint, 1 + floor(%(items)s * random() ^ 2)::bigint,
       case when random() < 0.8 then 'view' else 'like' end,
       now() - interval '90 days' + g * interval '1 second' * (89 * 86400.0 / %(events)s)
from generate_series(1, %(events)s) g
"""


def clone(server: str, n: int) -> str:
    """``rerankdb_fold_<n>``: the rerank benchmark's database with n items, no text HNSW index."""
    url = db.create_database(server, f"rerankdb_fold_{n}", template=BENCH_DATABASE, replace=True)
    with db.connect(url, autocommit=True) as conn:
        conn.execute("drop index rerankdb.item_vectors_embedding_hnsw")
        t0 = time.perf_counter()
        for k in range(1, (n + BASE_ITEMS - 1) // BASE_ITEMS):
            rows = {"offset": k * BASE_ITEMS, "base": BASE_ITEMS, "n": n}
            conn.execute(
                "insert into rerankdb.items (item_id, content) select item_id + %(offset)s, content"
                " from rerankdb.items where item_id <= %(base)s and item_id + %(offset)s <= %(n)s",
                rows,
            )
            conn.execute(
                "insert into rerankdb.item_vectors (item_id, embedding) select item_id + %(offset)s, embedding"
                " from rerankdb.item_vectors where item_id <= %(base)s and item_id + %(offset)s <= %(n)s",
                rows,
            )
        conn.execute("truncate rerankdb.item_queue")
        conn.execute("vacuum analyze")
        print(f"rerankdb_fold_{n}: {n:,} items in {time.perf_counter() - t0:.0f} s")
    return url


def fold_rate(url: str, n_items: int, n_users: int, events: int, seed: int) -> float:
    """Interactions folded per second: ``events`` new interactions of ``n_users`` users."""
    with db.connect(url, autocommit=True) as conn:
        dim = int(conn.execute("select rerankdb.dimension()").fetchone()[0])  # type: ignore[index]
        conn.execute("truncate rerankdb.interactions, rerankdb.user_state, rerankdb.user_vectors cascade")
        conn.execute("select setseed(%s)", [seed / 1000])
        conn.execute(HISTORY, {"users": n_users, "items": n_items, "events": events})
        conn.execute("vacuum analyze rerankdb.interactions, rerankdb.interaction_queue")
        t0 = time.perf_counter()
        folded = drain(conn, None, 0.0, dim).interactions_folded
        assert folded == events, (folded, events)
        return folded / (time.perf_counter() - t0)


def item_rank_size(conn: psycopg.Connection[Any]) -> str:
    row = conn.execute(
        "select pg_size_pretty(pg_table_size('rerankdb.item_rank')), current_setting('shared_buffers')"
    ).fetchone()
    assert row is not None
    return f"{row[0]} (shared_buffers {row[1]})"


def run(args: argparse.Namespace) -> None:
    server = embedded.resolve_url(Settings.from_env())
    bench_rerank.load(bench_url(Settings.from_env()), BASE_ITEMS, 1_000, args.seed)
    urls = {n: clone(server, n) for n in args.items}
    rates: dict[tuple[int, int], list[float]] = {(n, u): [] for n in args.items for u in args.users}
    try:
        with db.connect(urls[args.items[0]], autocommit=True) as conn:
            print(machine(conn))
        for r in range(args.rounds):
            order = list(rates) if r % 2 == 0 else list(reversed(rates))
            for n, u in order:
                rates[(n, u)].append(fold_rate(urls[n], n, u, args.interactions, args.seed + r))
                print(f"  round {r + 1}: {n:,} items, {u:,} users: {rates[(n, u)][-1]:,.0f}/s")
        sizes = {}
        for n, url in urls.items():
            with db.connect(url, autocommit=True) as conn:
                sizes[n] = item_rank_size(conn)
    finally:
        if not args.keep:
            for n in args.items:
                db.drop_database(server, f"rerankdb_fold_{n}")
    base = float(np.median(rates[(args.items[0], args.users[0])]))
    print(
        f"\nfold: {args.interactions:,} interactions per run, median of {args.rounds} alternating rounds, "
        "no encoder"
    )
    rows = [
        [f"{n:,}", sizes[n], f"{u:,}", f"{np.median(v):,.0f}", f"{np.median(v) / base:.2f}x"]
        for (n, u), v in rates.items()
    ]
    print(table(["items", "item_rank", "users", "folded/s", "vs the first"], rows))


def add_arguments(sub: Any) -> None:
    p = sub.add_parser("fold-scale", help="fold throughput by catalog size and by number of users")
    p.add_argument("--items", type=int, nargs="+", default=[100_000, 1_000_000])
    p.add_argument("--users", type=int, nargs="+", default=[1_000, 10_000])
    p.add_argument("--interactions", type=int, default=200_000, help="folded per run")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--keep", action="store_true", help="leave the rerankdb_fold_<N> databases in place")
    p.add_argument("--seed", type=int, default=7)
    p.set_defaults(run=run)
