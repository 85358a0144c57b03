"""``python -m rerankdb.bench features``: what the reranking features cost.

On the rerank benchmark's database (N item and U user vectors), with a k-d
collaborative vector for every item and user and both spaces centered (what a
training leaves), server execution time (EXPLAIN ANALYZE, TIMING OFF):

* rerank with k = 20 and 100 / 1000 candidates: plain, with diversity 0.3
  (MMR; as revisions 0012 to 0014 did it, their mmr reading the candidates it
  touched again, installed from the frozen files as
  ``rerankdb._bench_rerank_0012``; and as revision 0011 did it, reading every
  candidate twice, as ``rerankdb._bench_rerank_0011``), with five context
  items, and with exclude_seen (every user has 20
  positive interactions, some among the candidates), in alternating rounds on
  the same candidate lists;
* recommend (k = 10) through both HNSW indexes (the hybrid), beside revision
  0006's recommend (the text index alone; installed from its frozen files as
  ``rerankdb._bench_recommend_0006``), alternating, and the recall@10 of each
  against the exact hybrid top 10 (rerank over the whole catalog) for 20 users.

The database is left as it was.
"""

from __future__ import annotations

import argparse
import re
import time
from typing import Any

import numpy as np
import psycopg
from psycopg import sql as pgsql

from rerankdb import db, sqlfiles
from rerankdb.bench import rerank as bench_rerank
from rerankdb.bench.common import (
    bench_url,
    drop_frozen_recommend,
    exact_top_10,
    install_frozen_recommend,
    machine,
    p50_p99,
    table,
)
from rerankdb.bench.short_term import fill
from rerankdb.config import Settings

ROUNDS = 3
OLD_RECOMMEND = "rerankdb._bench_recommend_0006"
OLD_RERANK = "rerankdb._bench_rerank_0011"  # diversity as 0011 did it: two reads of each candidate
OLD_DIVERSIFY = "rerankdb._bench_diversify_0008"
LAZY_RERANK = (
    "rerankdb._bench_rerank_0012"  # diversity as 0012 to 0014 did it: mmr reads its candidates again
)
LAZY_MMR = "rerankdb._bench_mmr_0012"
RECOMMEND = "select * from rerankdb.recommend(%s, 10)"
SEEN_PER_USER = 20
RERANK_ARGS = pgsql.SQL("bigint, bigint[], integer, double precision, bigint[], boolean")


def install_old_recommend(conn: psycopg.Connection[Any]) -> None:
    """0006's recommend and the 0001 nearest it calls, under other names."""
    assert install_frozen_recommend(conn, "0006", "0001") == OLD_RECOMMEND


def install_old_diversity(conn: psycopg.Connection[Any]) -> None:
    """0011's rerank (diversity: rerank again, then 0008's diversify reads the vectors again),
    under other names."""
    diversify = sqlfiles.read_sql("revisions/0008/functions/diversify.sql")
    conn.execute(diversify.replace("function rerankdb.diversify(", f"function {OLD_DIVERSIFY}("))
    rerank = sqlfiles.read_sql("revisions/0011/functions/rerank.sql")
    renamed = (
        rerank.replace("function rerankdb.rerank(", f"function {OLD_RERANK}(")
        .replace("from rerankdb.rerank(rerank.user_id", f"from {OLD_RERANK}(rerank.user_id")
        .replace("from rerankdb.diversify(", f"from {OLD_DIVERSIFY}(")
        .replace("rerank.user_id", "_bench_rerank_0011.user_id")
    )
    assert renamed.count(OLD_RERANK) == 2 and renamed.count(OLD_DIVERSIFY) == 1
    conn.execute(renamed)


def install_lazy_diversity(conn: psycopg.Connection[Any]) -> None:
    """0012's rerank and mmr (the lazy greedy that rescans the items it touched and reads their
    vectors again, returning every row), under other names."""
    mmr = sqlfiles.read_sql("revisions/0012/functions/mmr.sql")
    conn.execute(mmr.replace("function rerankdb.mmr(", f"function {LAZY_MMR}("))
    rerank = sqlfiles.read_sql("revisions/0012/functions/rerank.sql")
    renamed = (
        rerank.replace("function rerankdb.rerank(", f"function {LAZY_RERANK}(")
        .replace("from rerankdb.mmr(", f"from {LAZY_MMR}(")
        .replace("rerank.user_id", "_bench_rerank_0012.user_id")
    )
    assert renamed.count(LAZY_RERANK) == 1 and renamed.count(LAZY_MMR) == 1
    conn.execute(renamed)


def drop_lazy_diversity(conn: psycopg.Connection[Any]) -> None:
    _drop(conn, LAZY_RERANK, RERANK_ARGS)
    _drop(
        conn,
        LAZY_MMR,
        pgsql.SQL("bigint[], double precision[], double precision[], boolean, double precision, integer"),
    )


def drop_old_diversity(conn: psycopg.Connection[Any]) -> None:
    _drop(conn, OLD_RERANK, RERANK_ARGS)
    _drop(conn, OLD_DIVERSIFY, pgsql.SQL("bigint[], double precision[], double precision, integer, boolean"))


def _drop(conn: psycopg.Connection[Any], qualified: str, args: pgsql.SQL) -> None:
    """Drop the function ``qualified`` (a name of ours) taking ``args``."""
    conn.execute(pgsql.SQL("drop function {}({})").format(_name(qualified), args))


def drop_old_recommend(conn: psycopg.Connection[Any]) -> None:
    drop_frozen_recommend(conn, "0006", "0001")


def _name(qualified: str) -> pgsql.Identifier:
    """A schema-qualified function name as an identifier (never formatted into SQL text)."""
    return pgsql.Identifier(*qualified.split("."))


def user_ms(conn: psycopg.Connection[Any], sql: str, users: list[int]) -> list[float]:
    """Server ms of ``sql`` (one parameter: a user id) for each user."""
    explain = "explain (analyze, timing off, summary on) " + sql
    out = []
    for u in users:
        text = "\n".join(r[0] for r in conn.execute(explain, [u]).fetchall())
        m = re.search(r"Execution Time: ([\d.]+) ms", text)
        assert m, text
        out.append(float(m.group(1)))
    return out


def rerank_rows(conn: psycopg.Connection[Any], args: argparse.Namespace) -> list[list[Any]]:
    variants = [
        ("plain", "select * from rerankdb.rerank(%s, %s::bigint[], 20)"),
        ("diversity 0.3", "select * from rerankdb.rerank(%s, %s::bigint[], 20, diversity => 0.3)"),
        (
            "diversity 0.3, as 0012-0014 (mmr reads again)",
            f"select * from {LAZY_RERANK}(%s, %s::bigint[], 20, diversity => 0.3)",
        ),
        (
            "diversity 0.3, as 0011 (two reads)",
            f"select * from {OLD_RERANK}(%s, %s::bigint[], 20, diversity => 0.3)",
        ),
        (
            "5 context items",
            "select * from rerankdb.rerank(%s, %s::bigint[], 20, context_items => array[1, 2, 3, 4, 5]::bigint[])",
        ),
        ("exclude_seen", "select * from rerankdb.rerank(%s, %s::bigint[], 20, exclude_seen => true)"),
    ]
    rows = []
    for n in args.sizes:
        samples: list[list[float]] = [[] for _ in variants]
        for r in range(ROUNDS):
            for j, (_, sql) in enumerate(variants):
                work = bench_rerank.Workload(args.items, args.users, n, args.seed + n + r)
                samples[j] += bench_rerank.server_ms(conn, sql, work, args.repeats).tolist()
        p50 = [float(np.percentile(s, 50)) for s in samples]
        p99 = [float(np.percentile(s, 99)) for s in samples]
        for (label, _), a, b in zip(variants, p50, p99, strict=True):
            rows.append([n, label, f"{a:.3f}", f"{b:.3f}", f"{a / p50[0]:.2f}x"])
        print(
            f"{n} candidates: diversity as 0012-0014 did it gave the same rows on {same_rows(conn, n, args)}"
        )
    return rows


def same_rows(conn: psycopg.Connection[Any], n: int, args: argparse.Namespace, lists: int = 50) -> str:
    """On how many candidate lists today's diversity and 0012's return the same rows (k = 20
    and k NULL: every candidate), as 'same/lists'."""
    work = bench_rerank.Workload(args.items, args.users, n, args.seed + 99)
    same = 0
    for _ in range(lists):
        user, cands = work.next()
        same += all(
            conn.execute(
                f"select * from {LAZY_RERANK}(%s, %s::bigint[], {k}, diversity => 0.3)", [user, cands]
            ).fetchall()
            == conn.execute(
                f"select * from rerankdb.rerank(%s, %s::bigint[], {k}, diversity => 0.3)", [user, cands]
            ).fetchall()
            for k in ("20", "null")
        )
    return f"{same}/{lists} lists"


def recommend_rows(conn: psycopg.Connection[Any], args: argparse.Namespace) -> list[list[Any]]:
    rng = np.random.default_rng(args.seed)
    users = [int(u) for u in rng.integers(1, args.users + 1, args.repeats)]
    old = pgsql.SQL("select * from {}(%s, 10)").format(_name(OLD_RECOMMEND)).as_string(conn)
    samples: dict[str, list[float]] = {"text index only (0006)": [], "hybrid (both indexes)": []}
    for _ in range(ROUNDS):
        samples["text index only (0006)"] += user_ms(conn, old, users)
        samples["hybrid (both indexes)"] += user_ms(conn, RECOMMEND, users)
    # Recall@10 against the exact hybrid top 10: rerank over the whole catalog.
    probe = users[:20]
    exact = exact_top_10(conn, probe, args.items)
    recall = {}
    for label, sql in (("text index only (0006)", old), ("hybrid (both indexes)", RECOMMEND)):
        got = {u: {r[0] for r in conn.execute(sql, [u]).fetchall()} for u in probe}
        recall[label] = float(np.mean([len(got[u] & exact[u]) / 10 for u in probe]))
    base = float(np.percentile(samples["text index only (0006)"], 50))
    out = []
    for label, s in samples.items():
        p50, p99 = p50_p99(s)
        out.append([label, f"{p50:.3f}", f"{p99:.3f}", f"{p50 / base:.2f}x", f"{recall[label]:.2f}"])
    return out


def run(args: argparse.Namespace) -> None:
    url = args.url or bench_url(Settings.from_env())
    bench_rerank.load(url, args.items, args.users, args.seed)
    k = args.collab_dim
    with db.connect(url, autocommit=True) as conn:
        print(machine(conn))
        install_old_recommend(conn)
        install_old_diversity(conn)
        install_lazy_diversity(conn)
        t0 = time.perf_counter()
        fill(conn, [("item_rank", "collab")], range(1, args.items + 1), k, 2)
        t1 = time.perf_counter()
        conn.execute("select rerankdb.refresh_collab_keys()")
        print(
            f"wrote {args.items:,} {k}-d collaborative vectors in {t1 - t0:.0f} s (what a training writes), "
            f"then rebuilt the collaborative HNSW index in bulk in {time.perf_counter() - t1:.0f} s"
        )
        fill(conn, [("user_vectors", "collab")], range(1, args.users + 1), k, 1)
        conn.execute("select rerankdb.refresh_centers()")
        conn.execute(
            "update rerankdb.settings set collab_weight = 0.7, text_centering = 1, collab_centering = 0.3"
        )
        rng = np.random.default_rng(args.seed)
        seen = [
            (u, int(i)) for u in range(1, args.users + 1) for i in rng.choice(args.items, SEEN_PER_USER) + 1
        ]
        with conn.cursor() as cur:
            cur.executemany(
                "insert into rerankdb.interactions (user_id, item_id, kind) values (%s, %s, 'view')", seen
            )
        conn.execute("vacuum analyze rerankdb.item_rank")
        conn.execute("vacuum analyze rerankdb.interactions")
        conn.execute("vacuum full rerankdb.user_vectors")
        bench_rerank.prewarm(url)
        try:
            reranks = rerank_rows(conn, args)
            recommends = recommend_rows(conn, args)
        finally:
            drop_old_recommend(conn)
            drop_old_diversity(conn)
            drop_lazy_diversity(conn)
            conn.execute("truncate rerankdb.interactions cascade")
            conn.execute("update rerankdb.user_vectors set collab = null")
            conn.execute("update rerankdb.item_rank set collab = null, support = null")
            conn.execute("select rerankdb.refresh_collab_keys()")
            conn.execute(
                "update rerankdb.settings set collab_weight = default, collab_centering = default,"
                " text_center = null, collab_center = null"
            )
            conn.execute("vacuum full rerankdb.item_rank")
            conn.execute("vacuum full rerankdb.user_vectors")
    print(
        f"\nrerank options: server ms (p50 / p99 of {ROUNDS} alternating rounds of {args.repeats} calls), "
        f"k = 20, {args.items:,} items, {args.users:,} users, {k}-d collaborative vectors, both spaces centered"
    )
    print(table(["candidates", "rerank", "p50", "p99", "p50 / plain"], reranks))
    print(
        f"\nrecommend, k = 10: server ms ({ROUNDS} rounds of {args.repeats} users), and recall@10 against "
        "the exact hybrid top 10 (20 users)"
    )
    print(table(["recommend", "p50", "p99", "p50 / text only", "recall@10 vs exact"], recommends))


def add_arguments(sub: Any) -> None:
    p = sub.add_parser("features", help="diversity, context, exclude_seen and hybrid recommend latency")
    p.add_argument("--url", help="an existing database (default: the rerank benchmark's)")
    p.add_argument("--items", type=int, default=100_000)
    p.add_argument("--users", type=int, default=1_000)
    p.add_argument("--sizes", type=int, nargs="+", default=[100, 1000])
    p.add_argument("--repeats", type=int, default=200, help="measured calls per figure and round")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--collab-dim", type=int, default=64)
    p.set_defaults(run=run)
