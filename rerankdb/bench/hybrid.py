"""``python -m rerankdb.bench hybrid``: recommend through the one hybrid index.

A catalog with structure, in a database of its own: N items in 300 clusters,
each with a 384-d text vector near its cluster's, a 64-d collaborative vector
near its cluster's (or, for 40% of the items, another cluster's: the log says
something the text does not) with a support from 1 to about 100, and a 64-d
sequence vector near its cluster's; U users, each near a mix of two clusters
in every space, 20 items seen.  The settings a training and a tune leave:
collab_weight 0.7, collab_shrink 10, sequence_weight 0.3, both spaces centered.

Server execution time (EXPLAIN ANALYZE, TIMING OFF) of recommend (k = 10,
exclude_seen) in alternating rounds over the same users, and its recall@10
against the exact top 10 (rerank over the whole catalog), for:

* the text index alone (revision 0006's recommend, from its frozen files),
  the baseline;
* two indexes, then the sequence reorder (revision 0013's recommend and
  0007's nearest, from their frozen files);
* the one hybrid index as revision 0014 searched it (its frozen nearest: the
  best greatest(2k, 40) by the index scored exactly, every pool branch in one
  statement);
* the one hybrid index (this revision), then again with 200 items embedded
  since its build (scored exactly beside the search).

Also the time to build each HNSW index in bulk.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np
import psycopg
from psycopg import sql as pgsql

from rerankdb import Client, db, embedded, migrate
from rerankdb.bench.common import (
    drop_frozen_recommend,
    exact_top_10,
    install_frozen_recommend,
    machine,
    p50_p99,
    table,
)
from rerankdb.bench.features import OLD_RECOMMEND, drop_old_recommend, install_old_recommend, user_ms
from rerankdb.config import Settings

DATABASE = "rerankdb_bench_hybrid"
CLUSTERS = 300
COLLAB_DIM = SEQ_DIM = 64
SEEN = 20
ROUNDS = 4  # even: each variant runs as often early as late in a round
FRESH = 200
WARM = 50  # unmeasured calls before each block
TWO_INDEXES = "rerankdb._bench_recommend_0011"  # shipped by 0011, unchanged up to 0013
HYBRID_0014 = "rerankdb._bench_recommend_0014"  # 0014's recommend (today's) calling 0014's nearest


def noisy(rng: np.random.Generator, centers: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Unit vectors near their cluster's center (cosine with it about 0.7)."""
    d = centers.shape[1]
    v = centers[labels] + rng.standard_normal((len(labels), d)) / np.sqrt(d)
    out: np.ndarray = (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)
    return out


def unit_centers(rng: np.random.Generator, d: int) -> np.ndarray:
    c = rng.standard_normal((CLUSTERS, d))
    out: np.ndarray = c / np.linalg.norm(c, axis=1, keepdims=True)
    return out


def copy_update(
    conn: psycopg.Connection[Any], table_name: str, key: str, sets: str, rows: list[tuple[Any, ...]]
) -> None:
    """``update rerankdb.<table_name> set <sets> from _v`` with rows (id, vector, vector, int)."""
    with conn.transaction():
        conn.execute("create temp table _v (id bigint, a vector, b vector, n integer) on commit drop")
        with conn.cursor().copy("copy _v from stdin with (format binary)") as cp:
            cp.set_types(["int8", "vector", "vector", "int4"])
            for row in rows:
                cp.write_row(row)
        conn.execute(
            pgsql.SQL("update rerankdb.{} t set " + sets + " from _v where t.{} = _v.id").format(
                pgsql.Identifier(table_name), pgsql.Identifier(key)
            )
        )


def load(url: str, args: argparse.Namespace) -> None:
    migrate.upgrade(url)
    rng = np.random.default_rng(args.seed)
    t_c, c_c, s_c = unit_centers(rng, 384), unit_centers(rng, COLLAB_DIM), unit_centers(rng, SEQ_DIM)
    labels = rng.integers(0, CLUSTERS, args.items)
    moved = np.where(rng.random(args.items) < 0.4, rng.integers(0, CLUSTERS, args.items), labels)
    with Client(url) as client, db.connect(url, autocommit=True) as conn:
        if client.dimension != 384:
            raise SystemExit("bench hybrid: needs a 384-d install")
        loaded = conn.execute(
            "select (select count(*) from rerankdb.items), (select count(seq) from rerankdb.user_vectors),"
            " (select count(*) from rerankdb.interactions)"
        ).fetchone()
        if loaded == (args.items, args.users, args.users * SEEN):
            print(f"reusing the {args.items:,} items and {args.users:,} users already loaded")
            return
        conn.execute("truncate rerankdb.items, rerankdb.user_vectors, rerankdb.interactions cascade")
        t0 = time.perf_counter()
        ids = np.arange(1, args.items + 1)
        for lo in range(0, args.items, 10_000):
            part = ids[lo : lo + 10_000]
            client.upsert_items({"item_id": int(i), "content": f"item {i}"} for i in part)
            client.set_item_vectors(part.tolist(), noisy(rng, t_c, labels[part - 1]))
        collab = noisy(rng, c_c, moved)
        seq = noisy(rng, s_c, labels)
        support = np.minimum(rng.geometric(0.04, args.items), 500)
        copy_update(
            conn,
            "item_rank",
            "item_id",
            "collab = _v.a, seq = _v.b, support = _v.n",
            [(int(i), collab[i - 1], seq[i - 1], int(support[i - 1])) for i in ids],
        )
        mix = rng.integers(0, CLUSTERS, (args.users, 2))
        users = list(range(1, args.users + 1))

        def blend(centers: np.ndarray) -> np.ndarray:
            v = 0.6 * centers[mix[:, 0]] + 0.4 * centers[mix[:, 1]]
            v = v + rng.standard_normal(v.shape) / np.sqrt(v.shape[1])
            out: np.ndarray = (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)
            return out

        client.set_user_vectors(users, blend(t_c))
        copy_update(
            conn,
            "user_vectors",
            "user_id",
            "collab = _v.a, seq = _v.b",
            [(u, c, s, 0) for u, c, s in zip(users, blend(c_c), blend(s_c), strict=True)],
        )
        seen = [(u, int(i)) for u in users for i in rng.choice(args.items, SEEN, replace=False) + 1]
        with conn.cursor() as cur:
            cur.executemany(
                "insert into rerankdb.interactions (user_id, item_id, kind) values (%s, %s, 'view')", seen
            )
        conn.execute(
            "update rerankdb.settings set collab_weight = 0.7, collab_shrink = 10, sequence_weight = 0.3,"
            " text_centering = 1, collab_centering = 0.3, trained_at = now()"
        )
        conn.execute("select rerankdb.refresh_centers()")
        print(f"loaded {args.items:,} items and {args.users:,} users in {time.perf_counter() - t0:.0f} s")
        for name in ("item_rank", "item_vectors", "user_vectors", "interactions"):
            conn.execute(pgsql.SQL("vacuum analyze rerankdb.{}").format(pgsql.Identifier(name)))


def recall(conn: psycopg.Connection[Any], sql: str, exact: dict[int, set[int]]) -> float:
    got = {u: {r[0] for r in conn.execute(sql, [u]).fetchall()} for u in exact}
    return float(np.mean([len(got[u] & exact[u]) / 10 for u in exact]))


def run(args: argparse.Namespace) -> None:
    url = args.url or db.ensure_database(embedded.resolve_url(Settings.from_env()), DATABASE)
    load(url, args)
    with db.connect(url, autocommit=True) as conn:
        print(machine(conn))
        t0 = time.perf_counter()
        conn.execute("select rerankdb.refresh_collab_keys()")
        t1 = time.perf_counter()
        built = conn.execute("select rerankdb.refresh_hybrid_keys()").fetchone()
        t2 = time.perf_counter()
        dims = conn.execute("select text_dim + collab_dim + seq_dim from rerankdb.hybrid_meta").fetchone()
        print(
            f"built in bulk: the collaborative index in {t1 - t0:.1f} s; the hybrid index "
            f"({built[0] if built else 0:,} keys, halfvec({dims[0] if dims else 0})) in {t2 - t1:.1f} s"
        )
        install_old_recommend(conn)
        assert install_frozen_recommend(conn, "0011", "0007") == TWO_INDEXES
        assert install_frozen_recommend(conn, "0014", "0014") == HYBRID_0014
        try:
            rows = measure(conn, url, args)
        finally:
            drop_old_recommend(conn)
            drop_frozen_recommend(conn, "0011", "0007")
            drop_frozen_recommend(conn, "0014", "0014")
            conn.execute("delete from rerankdb.items where item_id > %s", [args.items])
    print(
        f"\nrecommend, k = 10, exclude_seen: server ms ({ROUNDS} alternating rounds of {args.repeats} users), "
        f"recall@10 against the exact top 10 (rerank over all {args.items:,} items, {args.probe} users)"
    )
    print(table(["recommend", "p50", "p99", "p50 / text index alone", "recall@10 vs exact"], rows))


def measure(conn: psycopg.Connection[Any], url: str, args: argparse.Namespace) -> list[list[Any]]:
    rng = np.random.default_rng(args.seed + 1)
    users = [int(u) for u in rng.integers(1, args.users + 1, args.repeats)]
    warm = [int(u) for u in rng.integers(1, args.users + 1, WARM)]  # other calls than those measured
    old, two, hybrid_0014 = (
        pgsql.SQL("select * from {}(%s, 10)").format(pgsql.Identifier(*name.split("."))).as_string(conn)
        for name in (OLD_RECOMMEND, TWO_INDEXES, HYBRID_0014)
    )
    head = "select * from rerankdb.recommend(%s, 10)"
    variants = {
        "text index alone (0006), baseline": old,
        "two indexes + sequence reorder (0013)": two,
        "one hybrid index, searched as 0014 did": hybrid_0014,
        "one hybrid index (0017)": head,
    }
    samples: dict[str, list[float]] = {k: [] for k in variants}
    for round_ in range(ROUNDS):
        # Alternately forward and backward: no variant always follows the same one.
        for label, sql in list(variants.items())[:: 1 if round_ % 2 == 0 else -1]:
            # The tables and indexes of all of them exceed shared_buffers (512MB on the
            # embedded server): each block first reads its own pages back, unmeasured.
            user_ms(conn, sql, warm)
            samples[label] += user_ms(conn, sql, users)
    exact = exact_top_10(conn, users[: args.probe], args.items)
    recalls = {label: recall(conn, sql, exact) for label, sql in variants.items()}
    # Items embedded since the build: scored exactly beside the index search.
    fresh_ids = list(range(args.items + 1, args.items + FRESH + 1))
    with Client(url) as client:
        client.upsert_items({"item_id": i, "content": f"new item {i}"} for i in fresh_ids)
        client.set_item_vectors(
            fresh_ids, noisy(rng, unit_centers(rng, 384), rng.integers(0, CLUSTERS, FRESH))
        )
    label = f"one hybrid index, {FRESH} items embedded since its build"
    samples[label] = []
    for _ in range(ROUNDS):
        user_ms(conn, head, warm)
        samples[label] += user_ms(conn, head, users)
    exact = exact_top_10(conn, list(exact), args.items + FRESH)
    recalls[label] = recall(conn, head, exact)
    base = float(np.percentile(samples["text index alone (0006), baseline"], 50))
    out = []
    for label, s in samples.items():
        p50, p99 = p50_p99(s)
        out.append([label, f"{p50:.3f}", f"{p99:.3f}", f"{p50 / base:.2f}x", f"{recalls[label]:.3f}"])
    return out


def add_arguments(sub: Any) -> None:
    p = sub.add_parser("hybrid", help="recommend through the one hybrid index, beside the text index alone")
    p.add_argument(
        "--url", help="an existing database (default: rerankdb_bench_hybrid on the configured server)"
    )
    p.add_argument("--items", type=int, default=100_000)
    p.add_argument("--users", type=int, default=1_000)
    p.add_argument("--repeats", type=int, default=200, help="measured calls per figure and round")
    p.add_argument("--probe", type=int, default=50, help="users whose recall is measured")
    p.add_argument("--seed", type=int, default=11)
    p.set_defaults(run=run)
