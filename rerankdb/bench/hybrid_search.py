"""``python -m rerankdb.bench hybrid-search``: where the hybrid index's time goes.

Runs on the catalog ``bench hybrid`` loads and builds (run that first). Two parts:

* the same run, rounds alternately forward and backward: revision 0006's recommend
  beside the bare text search it makes (``order by embedding <#> q limit 10``),
  and today's recommend beside the bare hybrid search it makes (``order by key
  <#> q limit 40``, the user's key as ``nearest`` builds it): server ms and
  buffers per call, so what ``recommend`` costs around its search shows apart
  from the search;
* with ``--graphs M,EF_CONSTRUCTION ...``: for each, an HNSW index on a copy of
  the keys (``public.bench_hybrid_keys``, dropped after), the bare search at
  ``hnsw.ef_search`` 20, 30 and 40: server ms, buffers, and recall of the best
  10 of what it finds against the exact best 10 by the key (a sequential scan):
  the graph's price for recall.

With ``--lists`` (and ``--url`` of any database with a hybrid index built, the
eval's ``rerankdb_eval`` say), only this: for every user with a vector, today's
top 10 beside revision 0014's search and beside the exact top 10 (``rerank``
over every item, exclude_seen).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import psycopg
from psycopg import sql as pgsql

from rerankdb import db, embedded
from rerankdb.bench.common import drop_frozen_recommend, install_frozen_recommend, machine, table
from rerankdb.bench.features import OLD_RECOMMEND, drop_old_recommend, install_old_recommend
from rerankdb.bench.hybrid import DATABASE
from rerankdb.config import Settings

COPY = "public.bench_hybrid_keys"
USER_QUERIES = """
select rerankdb.blend(u.embedding, u.short_embedding, st.short_weight, st.text_center, st.text_centering)::text,
       (rerankdb.blend(u.embedding, u.short_embedding, st.short_weight, st.text_center, st.text_centering)
        || rerankdb.blend(u.collab, u.short_collab, st.collab_short_weight, st.collab_center,
                          st.collab_centering)
        || u.seq)::halfvec::text
from rerankdb.user_vectors u, rerankdb.settings st
where u.user_id = %s
"""


def explain(conn: psycopg.Connection[Any], sql: str, params: list[Any]) -> tuple[float, int]:
    """Server ms and shared buffers (hit or read) of one execution."""
    row = conn.execute("explain (analyze, buffers, timing off, format json) " + sql, params).fetchone()
    plan = row[0][0]  # type: ignore[index]
    top = plan["Plan"]
    return float(plan["Execution Time"]), int(
        top.get("Shared Hit Blocks", 0) + top.get("Shared Read Blocks", 0)
    )


def measure(
    conn: psycopg.Connection[Any], sql: str, params: Callable[[int], list[Any]], users: list[int]
) -> tuple[list[float], list[int]]:
    ms, buffers = [], []
    for u in users:
        t, b = explain(conn, sql, params(u))
        ms.append(t)
        buffers.append(b)
    return ms, buffers


def around_the_search(
    conn: psycopg.Connection[Any], users: list[int], queries: dict[int, tuple[str, str]], rounds: int
) -> list[list[Any]]:
    old = pgsql.SQL("select * from {}(%s, 10)").format(pgsql.Identifier(*OLD_RECOMMEND.split(".")))
    variants: dict[str, tuple[str, Callable[[int], list[Any]]]] = {
        "recommend, revision 0006 (text index alone)": (old.as_string(conn), lambda u: [u]),
        "its bare text search, limit 10": (
            "select item_id from rerankdb.item_vectors order by embedding <#> %s::vector limit 10",
            lambda u: [queries[u][0]],
        ),
        "recommend, today (hybrid index)": ("select * from rerankdb.recommend(%s, 10)", lambda u: [u]),
        "its bare hybrid search, limit 40": (
            "select item_id from rerankdb.hybrid_keys order by key <#> %s::halfvec limit 40",
            lambda u: [queries[u][1]],
        ),
    }
    ms: dict[str, list[float]] = {k: [] for k in variants}
    buffers: dict[str, list[int]] = {k: [] for k in variants}
    for round_ in range(rounds):
        for label, (sql, params) in list(variants.items())[:: 1 if round_ % 2 == 0 else -1]:
            measure(conn, sql, params, users)  # its pages back in shared_buffers, unmeasured
            t, b = measure(conn, sql, params, users)
            ms[label] += t
            buffers[label] += b
    return [
        [label, f"{np.percentile(ms[label], 50):.3f}", f"{np.mean(buffers[label]):.0f}"] for label in variants
    ]


def graphs(
    conn: psycopg.Connection[Any], users: list[int], queries: dict[int, tuple[str, str]], specs: list[str]
) -> list[list[Any]]:
    conn.execute(f"drop table if exists {COPY}")
    conn.execute(f"create table {COPY} as select item_id, key from rerankdb.hybrid_keys")
    conn.execute(f"vacuum analyze {COPY}")
    search = f"select item_id from {COPY} order by key <#> %s::halfvec limit %s"
    with conn.transaction():
        conn.execute("set local enable_indexscan = off")  # (no index yet: the exact best 10)
        exact = {u: {r[0] for r in conn.execute(search, [queries[u][1], 10])} for u in users}
    out = []
    try:
        conn.execute("set maintenance_work_mem = '1GB'")
        for spec in specs:
            m, ef_construction = (int(x) for x in spec.split(","))
            conn.execute("drop index if exists public.bench_hybrid_keys_hnsw")
            t0 = time.perf_counter()
            conn.execute(
                f"create index bench_hybrid_keys_hnsw on {COPY} using hnsw (key halfvec_ip_ops)"
                f" with (m = {m}, ef_construction = {ef_construction})"
            )
            built = time.perf_counter() - t0
            row: list[Any] = [f"m {m}, ef_construction {ef_construction}", f"{built:.0f} s"]
            for ef in (20, 30, 40):
                conn.execute(f"set hnsw.ef_search = {ef}")
                params = _limit(queries, ef)
                measure(conn, search, params, users)
                ms, buffers = measure(conn, search, params, users)
                recall = []
                for u in users:
                    found = [r[0] for r in conn.execute(search, [queries[u][1], ef])]
                    best = conn.execute(
                        f"select item_id from {COPY} where item_id = any(%s) order by key <#> %s::halfvec limit 10",
                        [found, queries[u][1]],
                    )
                    recall.append(len({r[0] for r in best} & exact[u]) / 10)
                row.append(f"{np.percentile(ms, 50):.3f} ms, {np.mean(buffers):.0f}, {np.mean(recall):.3f}")
            out.append(row)
            print(f"  {row[0]}: built in {row[1]}, searched", flush=True)
    finally:
        conn.execute("reset hnsw.ef_search")
        conn.execute(f"drop table if exists {COPY}")
    return out


def lists(conn: psycopg.Connection[Any]) -> str:
    old = install_frozen_recommend(conn, "0014", "0014")
    try:
        everything = [r[0] for r in conn.execute("select item_id from rerankdb.items")]
        users = [r[0] for r in conn.execute("select user_id from rerankdb.user_vectors order by 1")]
        same_old = same_exact = 0
        overlap = []
        for u in users:
            today = [r[0] for r in conn.execute("select item_id from rerankdb.recommend(%s, 10)", [u])]
            before = [
                r[0]
                for r in conn.execute(
                    pgsql.SQL("select item_id from {}(%s, 10)").format(pgsql.Identifier(*old.split("."))), [u]
                )
            ]
            exact = [
                r[0]
                for r in conn.execute(
                    "select item_id from rerankdb.rerank(%s, %s::bigint[], 10, exclude_seen => true)",
                    [u, everything],
                )
            ]
            same_old += today == before
            same_exact += today == exact
            overlap.append(len(set(today) & set(exact)) / len(exact) if exact else 1.0)
    finally:
        drop_frozen_recommend(conn, "0014", "0014")
    return (
        f"{len(users)} users: top 10 the same list as 0014's search for {same_old}, as the exact top 10 for"
        f" {same_exact}; holds {np.mean(overlap):.3f} of the exact top 10"
    )


def _limit(queries: dict[int, tuple[str, str]], ef: int) -> Callable[[int], list[Any]]:
    """A user's hybrid key and the limit ef (the search's parameters)."""
    return lambda u: [queries[u][1], ef]


def run(args: argparse.Namespace) -> None:
    url = args.url or db.ensure_database(embedded.resolve_url(Settings.from_env()), DATABASE)
    with db.connect(url, autocommit=True) as conn:
        if conn.execute("select count(*) from rerankdb.hybrid_meta").fetchone() != (1,):
            raise SystemExit(
                "bench hybrid-search: no hybrid index built here; run python -m rerankdb.bench hybrid"
            )
        print(machine(conn))
        if args.lists:
            print(lists(conn))
            return
        rng = np.random.default_rng(args.seed)
        n_users = conn.execute("select max(user_id) from rerankdb.user_vectors").fetchone()[0]  # type: ignore[index]
        users = [int(u) for u in rng.choice(np.arange(1, n_users + 1), args.users, replace=False)]
        queries: dict[int, tuple[str, str]] = {}
        for u in users:
            row = conn.execute(USER_QUERIES, [u]).fetchone()
            if row is None or None in row:
                raise SystemExit(f"bench hybrid-search: user {u} lacks a vector the hybrid index needs")
            queries[u] = (str(row[0]), str(row[1]))
        conn.execute("set hnsw.iterative_scan = relaxed_order")
        install_old_recommend(conn)
        try:
            rows = around_the_search(conn, users, queries, args.rounds)
        finally:
            drop_old_recommend(conn)
        print(
            f"\nrecommend around its search: {args.rounds} rounds of {args.users} users, server ms p50,"
            " buffers per call (hit or read)"
        )
        print(table(["call", "p50 ms", "buffers"], rows))
        if args.graphs:
            print(
                f"\nthe bare hybrid search on other graphs ({args.users} users): p50 ms, buffers per call,"
                " recall of its best 10 against the exact best 10 by the key"
            )
            rows = graphs(conn, users, queries, args.graphs)
            print()
            print(table(["HNSW index", "build", "ef_search 20", "30", "40"], rows))


def add_arguments(sub: Any) -> None:
    p = sub.add_parser("hybrid-search", help="where recommend's time goes around the hybrid index's search")
    p.add_argument("--url", help="the database bench hybrid built (default: rerankdb_bench_hybrid)")
    p.add_argument("--users", type=int, default=120)
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument(
        "--graphs",
        nargs="*",
        default=[],
        metavar="M,EF_CONSTRUCTION",
        help="other HNSW graphs to build and search",
    )
    p.add_argument(
        "--lists", action="store_true", help="only compare every user's top 10 with 0014's and the exact"
    )
    p.add_argument("--seed", type=int, default=3)
    p.set_defaults(run=run)
