"""Worker benchmarks: freshness, fold throughput, encoder throughput.

* ``freshness``: with a worker running, the time from an INSERT into
  rerankdb.interactions (committed) until rerankdb.rerank for that user
  reflects it; LISTEN/NOTIFY on, and beside it poll only.
* ``fold``: interactions folded into user vectors per second (items already
  embedded), in batches and one event at a time; beside the single-event
  figure, the same events folded by recomputing the user from the whole log.
* ``encoder``: texts per second for each backend, with the cosine agreement
  against fp32, on real text (MovieLens titles and genres when the dataset is
  at ../shared/datasets, else generated sentences).
"""

from __future__ import annotations

import argparse
import csv
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import psycopg

from rerankdb import Client, db, embedded, migrate, user_refresh
from rerankdb.bench.common import cpu_model, machine, p50_p99, table
from rerankdb.config import Settings
from rerankdb.drain import drain
from rerankdb.worker import Worker

DATABASE = "rerankdb_bench_worker"
DATASET = (
    Path(__file__).resolve().parents[2].parent / "shared" / "datasets" / "ml-latest-small" / "movies.csv"
)


def fresh_database(items: int, seed: int) -> str:
    """A new database with ``items`` items carrying random vectors (no encoder needed)."""
    url = db.create_database(embedded.resolve_url(Settings.from_env()), DATABASE, replace=True)
    migrate.upgrade(url)
    seed_catalog(url, items, seed)
    return url


def seed_catalog(url: str, items: int, seed: int) -> None:
    """``items`` items with random vectors, brought rather than embedded (nothing queued)."""
    rng = np.random.default_rng(seed)
    with Client(url) as client:
        ids = list(range(1, items + 1))
        client.upsert_items({"item_id": i, "content": f"item {i}"} for i in ids)
        client.set_item_vectors(ids, rng.standard_normal((items, client.dimension), dtype=np.float32))
    with db.connect(url, autocommit=True) as conn:
        conn.execute("delete from rerankdb.item_queue")  # vectors were brought, not embedded


# --- freshness -------------------------------------------------------------------


def reflected(conn: psycopg.Connection[Any], user: int, item: int) -> bool:
    """Whether rerank scores ``item`` for ``user``, i.e. the user has a vector now."""
    row = conn.execute("select score from rerankdb.rerank(%s, array[%s]::bigint[])", [user, item]).fetchone()
    return row is not None and row[0] is not None


def measure_freshness(
    url: str, listen: bool, events: int, items: int, user_base: int, seed: int, gap: float
) -> np.ndarray:
    """Delays of ``events`` interactions, each sent after a random pause of up to ``gap`` s."""
    worker = Worker(url, Settings(poll_seconds=1.0), None, listen=listen)
    thread = threading.Thread(target=worker.run, kwargs={"install_signals": False})
    thread.start()
    rng = np.random.default_rng(seed)
    out = np.empty(events)
    try:
        time.sleep(1.0)  # start-up drain done, LISTEN in place
        with db.connect(url, autocommit=True) as writer, db.connect(url, autocommit=True) as reader:
            for e in range(events):
                user, item = user_base + e, int(rng.integers(1, items + 1))
                writer.execute(
                    "insert into rerankdb.interactions (user_id, item_id, kind) values (%s, %s, 'like')",
                    [user, item],
                )
                t0 = time.perf_counter()  # the INSERT has committed (autocommit)
                while not reflected(reader, user, item):
                    time.sleep(0.0005)
                out[e] = (time.perf_counter() - t0) * 1000
                time.sleep(float(rng.uniform(0, gap)))  # events arrive at random moments
    finally:
        worker.request_stop()
        thread.join()
    return out


def freshness(args: argparse.Namespace) -> None:
    url = fresh_database(args.items, args.seed)
    with db.connect(url) as conn:
        print(f"machine: {machine(conn)}")
    print(f"{args.events} events with LISTEN/NOTIFY, {args.poll_events} poll-only; poll interval 1 s\n")
    notify = measure_freshness(url, True, args.events, args.items, 1_000_000, args.seed, gap=0.05)
    # Pauses of up to a whole poll interval, so arrivals fall anywhere in the poll's phase.
    poll = measure_freshness(url, False, args.poll_events, args.items, 2_000_000, args.seed + 1, gap=1.0)
    rows = []
    for name, ms in (("LISTEN/NOTIFY + poll", notify), ("poll only (baseline)", poll)):
        p50, p99 = p50_p99(ms)
        rows.append([name, len(ms), f"{p50:.1f}", f"{p99:.1f}", f"{ms.max():.1f}"])
    print("Time from committed INSERT to a reranking that reflects it, ms")
    print(table(["mode", "events", "p50", "p99", "max"], rows))
    print(f"\np50 speed-up of NOTIFY over polling: {np.median(poll) / np.median(notify):.0f}x")


# --- fold throughput -------------------------------------------------------------------


def fold(args: argparse.Namespace) -> None:
    url = fresh_database(args.items, args.seed)
    rng = np.random.default_rng(args.seed)
    context_weight = 0.0
    with db.connect(url, autocommit=True) as conn:
        print(f"machine: {machine(conn)}")
        dim = Client(url).dimension
        n = args.interactions
        users = rng.integers(1, args.users + 1, n)
        users[: args.heavy * args.history] = np.repeat(np.arange(1, args.heavy + 1), args.history)
        items = rng.integers(1, args.items + 1, n)
        t0 = time.perf_counter()
        with conn.cursor().copy("copy rerankdb.interactions (user_id, item_id, kind) from stdin") as cp:
            for u, i in zip(users.tolist(), items.tolist(), strict=True):
                cp.write_row((u, i, "view"))
        print(f"inserted {n:,} interactions for {args.users:,} users in {time.perf_counter() - t0:.1f} s")

        t0 = time.perf_counter()
        report = drain(conn, None, context_weight, dim)
        batch_s = time.perf_counter() - t0
        assert report.interactions_folded == n
        conn.execute("vacuum analyze rerankdb.interaction_queue")  # steady state, as autovacuum leaves it

        # Single events for users with a long history (args.history interactions):
        # the O(1) fold does not read it, a recompute does.
        single, recompute = [], []
        for _ in range(args.single):
            u, i = int(rng.integers(1, args.heavy + 1)), int(rng.integers(1, args.items + 1))
            conn.execute("insert into rerankdb.interactions (user_id, item_id) values (%s, %s)", [u, i])
            t0 = time.perf_counter()
            assert user_refresh.refresh_users(conn, None, context_weight, dim).folded == 1
            single.append(time.perf_counter() - t0)
            conn.execute("insert into rerankdb.interactions (user_id, item_id) values (%s, %s)", [u, i])
            t0 = time.perf_counter()
            user_refresh.rebuild_users(conn, None, context_weight, dim, [u])  # the whole history of u
            recompute.append(time.perf_counter() - t0)
    per_user = args.history
    rows = [
        ["batch (drain)", f"{n / batch_s:,.0f}", f"{batch_s:.2f} s for {n:,}"],
        ["single event, O(1) fold", f"{1 / np.mean(single):,.0f}", f"p50 {np.median(single) * 1000:.2f} ms"],
        [
            f"single event, recompute the user ({per_user:,} events)",
            f"{1 / np.mean(recompute):,.0f}",
            f"p50 {np.median(recompute) * 1000:.2f} ms",
        ],
    ]
    print("\nInteractions folded into user vectors per second (items already embedded)")
    print(table(["path", "interactions/s", "detail"], rows))
    print(f"\nO(1) fold vs recompute, single event: {np.mean(recompute) / np.mean(single):.1f}x")


# --- encoder -----------------------------------------------------------------------


def real_texts(limit: int) -> tuple[list[str], str]:
    if DATASET.is_file():
        with DATASET.open(encoding="utf-8") as f:
            rows = list(csv.DictReader(f))[:limit]
        return [f"{r['title']}. {r['genres'].replace('|', ', ')}" for r in rows], "MovieLens titles + genres"
    rng = np.random.default_rng(0)
    words = [
        "space",
        "love",
        "war",
        "detective",
        "family",
        "robot",
        "ocean",
        "music",
        "city",
        "night",
        "dream",
        "secret",
    ]
    texts = [" ".join(rng.choice(words, int(rng.integers(4, 16)))) for _ in range(limit)]
    return texts, "generated sentences (dataset not found)"


def encoder(args: argparse.Namespace) -> None:
    import torch

    from rerankdb.encoder import TransformerEncoder

    texts, source = real_texts(args.texts)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    where = (
        torch.cuda.get_device_name(0)
        if device == "cuda"
        else f"{cpu_model()}, {torch.get_num_threads()} threads"
    )
    print(f"device: {device} ({where}); torch {torch.__version__}")
    print(f"texts: {len(texts)} {source}; batch size {args.batch_size}\n")
    reference: np.ndarray | None = None
    rows: list[list[Any]] = []
    base_rate = 0.0
    for backend in args.backends:
        enc = TransformerEncoder(backend=backend, device=device, batch_size=args.batch_size)
        enc.encode(texts[: args.batch_size * 2])  # warm-up
        best = float("inf")
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            vecs = enc.encode(texts)
            best = min(best, time.perf_counter() - t0)
        rate = len(texts) / best
        if reference is None:
            reference, base_rate = vecs, rate
        agree = (vecs * reference).sum(axis=1)
        rows.append(
            [backend, f"{rate:,.0f}", f"{rate / base_rate:.2f}x", f"{agree.mean():.4f}", f"{agree.min():.4f}"]
        )
    print(table(["backend", "texts/s", "vs fp32", "agreement mean", "agreement min"], rows))


def add_arguments(sub: Any) -> None:
    f = sub.add_parser("freshness", help="INSERT-to-rerank delay, NOTIFY vs poll")
    f.add_argument("--events", type=int, default=300)
    f.add_argument("--poll-events", type=int, default=60)
    f.add_argument("--items", type=int, default=2000)
    f.add_argument("--seed", type=int, default=11)
    f.set_defaults(run=freshness)

    fo = sub.add_parser("fold", help="user refresh throughput, batch and single event")
    fo.add_argument("--interactions", type=int, default=100_000)
    fo.add_argument("--users", type=int, default=10_000)
    fo.add_argument("--items", type=int, default=2000)
    fo.add_argument("--single", type=int, default=300)
    fo.add_argument("--heavy", type=int, default=20, help="users with a long history, for single events")
    fo.add_argument("--history", type=int, default=1000, help="interactions of each heavy user")
    fo.add_argument("--seed", type=int, default=12)
    fo.set_defaults(run=fold)

    e = sub.add_parser("encoder", help="encoder throughput and agreement per backend")
    e.add_argument("--texts", type=int, default=2000)
    e.add_argument("--backends", nargs="+", default=["fp32", "bf16", "onnx"])
    e.add_argument("--batch-size", type=int, default=64)
    e.add_argument("--repeats", type=int, default=2)
    e.add_argument("--device", choices=["cpu", "cuda"], default=None)
    e.set_defaults(run=encoder)
