"""The ``rerankdb`` command line.

User mistakes (bad arguments, a missing schema, an unreachable database) end
with a one-line message and exit status 1 or 2, never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import psycopg
import sqlalchemy.exc

from rerankdb import db, embedded, item_refresh, migrate
from rerankdb.client import Client, Ranked
from rerankdb.config import Settings, parse_dim
from rerankdb.errors import RerankdbError


def _dim(raw: str) -> int:
    try:
        return parse_dim(raw, "--dim")
    except RerankdbError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="rerankdb",
        description="Personalized reranking inside PostgreSQL. Uses RERANKDB_DATABASE_URL, "
        "or an embedded PostgreSQL with pgvector when it is unset.",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    m = sub.add_parser("migrate", help="install or upgrade the rerankdb schema (Alembic)")
    m.add_argument("--dim", type=_dim, help="embedding dimension at install (default RERANKDB_DIM or 384)")
    m.add_argument("--to", default="head", metavar="REVISION", help="target revision (default head)")
    m.add_argument("--sql", action="store_true", help="print the SQL script instead of running it")

    d = sub.add_parser("db", help="the embedded PostgreSQL server")
    d.add_argument("action", choices=["start", "stop", "url"], help="start it, stop it, or print its URL")

    r = sub.add_parser("rerank", help="reorder candidate items for a user")
    r.add_argument("user_id", type=int, metavar="USER")
    r.add_argument("items", type=int, nargs="+", metavar="ITEM")
    r.add_argument("-k", type=int, default=None, help="return only the first K")

    rec = sub.add_parser("recommend", help="nearest items to a user's vector")
    rec.add_argument("user_id", type=int, metavar="USER")
    rec.add_argument("-k", type=int, default=10, help="how many (default 10)")
    rec.add_argument("--include-seen", action="store_true", help="keep items the user interacted with")

    s = sub.add_parser("similar", help="nearest items to an item")
    s.add_argument("item_id", type=int, metavar="ITEM")
    s.add_argument("-k", type=int, default=10, help="how many (default 10)")

    sub.add_parser("status", help="schema revision, dimension, counts and the worker's backlog")

    ev = sub.add_parser("eval", help="offline evaluation against baselines on real data")
    ev.add_argument("dataset", choices=["movielens"], help="the data format")
    ev.add_argument("path", type=Path, help="folder with ratings.csv and movies.csv (ml-latest-small format)")
    ev.add_argument("--out", type=Path, default=Path("eval-out"), help="where results go (default eval-out/)")
    ev.add_argument("--seed", type=int, default=42, help="fixes the candidate lists (default 42)")
    ev.add_argument("--backend", choices=["fp32", "bf16"], default="fp32", help="encoder backend")
    ev.add_argument(
        "--collab-dim",
        type=int,
        default=None,
        help="collaborative dimension to train (default: the shipped setting)",
    )

    dm = sub.add_parser("demo", help="see it work: sample catalog, users, live reranking")
    dm.add_argument("--keep", action="store_true", help="leave the demo database (and server) running")
    dm.add_argument("--database", default="rerankdb_demo", help=argparse.SUPPRESS)

    w = sub.add_parser("worker", help="keep item and user vectors fresh (runs until SIGTERM)")
    w.add_argument("--once", action="store_true", help="drain all pending work, then exit")
    w.add_argument("--no-listen", action="store_true", help="poll only, without LISTEN/NOTIFY")
    _encoder_arguments(w)

    tr = sub.add_parser("train", help="learn collaborative item vectors from the log, then rebuild users")
    _encoder_arguments(tr)

    rb = sub.add_parser("rebuild", help="recompute every user vector from the log (after a weight change)")
    rb.add_argument("--items", action="store_true", help="re-embed every item first (after a model change)")
    _encoder_arguments(rb)
    return p


def _encoder_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--backend",
        choices=["fp32", "bf16"],
        default=None,
        help="encoder backend (default RERANKDB_ENCODER_BACKEND or fp32)",
    )
    p.add_argument(
        "--no-encoder",
        action="store_true",
        help="do not load the encoder: no item embedding, contexts ignored (bring-your-own vectors)",
    )


def print_ranked(rows: Sequence[Ranked]) -> None:
    if not rows:
        print("(no rows)")
        return
    width = max(len(str(r.item_id)) for r in rows)
    print(f"{'rank':>4}  {'item':>{width}}  score")
    for r in rows:
        score = "-" if r.score is None else f"{r.score:.4f}"
        print(f"{r.rank:>4}  {r.item_id:>{width}}  {score}")


def run(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    if args.command == "db":
        if args.action == "start":
            url = embedded.start(settings.home)
            print(f"embedded PostgreSQL running, data in {embedded.pgdata_dir(settings.home)}")
            print(url)
        elif args.action == "stop":
            stopped = embedded.stop(settings.home)
            print("stopped" if stopped else "not running")
        else:
            running = embedded.running_url(settings.home)
            if running is None:
                print("rerankdb: the embedded server is not running (rerankdb db start)", file=sys.stderr)
                return 1
            print(running)
        return 0

    if args.command == "eval":
        from rerankdb.eval import runner

        runner.run(
            args.path,
            args.out,
            seed=args.seed,
            backend=args.backend,
            settings=settings,
            collab_dim=args.collab_dim,
        )
        return 0

    if args.command == "demo":
        from rerankdb import demo

        return demo.run(settings, keep=args.keep, database=args.database)

    if args.command == "migrate" and args.sql:
        print(migrate.upgrade_sql(revision=args.to, dim=args.dim), end="")
        return 0

    url = db.resolve_url(settings)
    if args.command in ("worker", "rebuild", "train"):
        return run_worker(args, url, settings)
    if args.command == "migrate":
        migrate.upgrade(url, revision=args.to, dim=args.dim)
        print(f"rerankdb schema at revision {migrate.current_revision(url)}")
        return 0

    with Client(url, max_connections=1) as client:
        if args.command == "rerank":
            print_ranked(client.rerank(args.user_id, args.items, args.k))
        elif args.command == "recommend":
            print_ranked(client.recommend(args.user_id, args.k, exclude_seen=not args.include_seen))
        elif args.command == "similar":
            print_ranked(client.similar_items(args.item_id, args.k))
        elif args.command == "status":
            st = client.status()
            where = "RERANKDB_DATABASE_URL" if settings.database_url else "embedded"
            print(f"database        {where}")
            print(f"schema revision {st.schema_revision}")
            print(f"dimension       {st.dimension}")
            print(f"items           {st.items} ({st.item_vectors} with vectors)")
            print(f"user vectors    {st.user_vectors}")
            print(f"interactions    {st.interactions}")
            with db.connect(url, autocommit=True) as conn:
                cur = conn.execute("select * from rerankdb.status")
                row = cur.fetchone()
                assert cur.description is not None and row is not None
                for col, value in zip((c.name for c in cur.description), row, strict=True):
                    print(f"{col.replace('_', ' '):<23} {'-' if value is None else value}")
    return 0


def _progress(label: str) -> Callable[[int, int], None]:
    def show(done: int, total: int) -> None:
        width = 30
        filled = width * done // max(total, 1)
        print(f"\r{label} [{'#' * filled}{'.' * (width - filled)}] {done}/{total}", end="", file=sys.stderr)
        if done >= total:
            print(file=sys.stderr)

    return show


def run_worker(args: argparse.Namespace, url: str, settings: Settings) -> int:
    from rerankdb import encoder as enc
    from rerankdb.worker import Worker

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    encoder = None
    if not args.no_encoder:
        print("loading the encoder...", file=sys.stderr)
        encoder = enc.from_env(args.backend)
    worker = Worker(url, settings, encoder, listen=not getattr(args, "no_listen", False))
    if args.command == "train":
        report = worker.train()
        if report.dim == 0:
            print("not enough interactions to train collaborative vectors yet")
        else:
            print(
                f"trained {report.dim}-d collaborative vectors for {report.items} items from "
                f"{report.interactions} interactions of {report.users} users in {report.seconds:.1f} s"
            )
        return 0
    if args.command == "rebuild":
        if args.items:
            with db.connect(url, autocommit=True) as conn:
                n = item_refresh.requeue_all_items(conn)
            print(f"re-embedding {n} items...", file=sys.stderr)
            worker.drain_once()
        counted = worker.rebuild(progress=_progress("rebuilding users"))
        print(f"rebuilt user vectors from {counted} interactions")
        return 0
    if args.once:
        report = worker.drain_once()
        print(
            f"drained in {report.seconds:.2f} s: {report.items_embedded} items embedded, "
            f"{report.items_unchanged} unchanged, {report.items_failed} failed; "
            f"{report.interactions_folded} interactions folded, {report.interactions_deferred} deferred"
        )
        return 0
    worker.run()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except RerankdbError as exc:
        print(f"rerankdb: {exc}", file=sys.stderr)
        return 1
    except psycopg.Error as exc:
        print(f"rerankdb: database error: {str(exc).strip()}", file=sys.stderr)
        return 1
    except sqlalchemy.exc.DBAPIError as exc:  # raised through Alembic
        print(f"rerankdb: database error: {str(exc.orig).strip()}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
