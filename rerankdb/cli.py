"""The ``rerankdb`` command line: one handler per subcommand.

User mistakes (bad arguments, a missing schema, an unreachable database) end
with a one-line message and exit status 1 or 2, never a traceback.  Every
setting comes from :class:`rerankdb.config.Settings` (``RERANKDB_*``); a flag
that overrides one names its variable in ``--help``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import alembic.util
import psycopg
import sqlalchemy.exc

from rerankdb import citus, db, embedded, migrate, sequence_space
from rerankdb.client import Client, Ranked, WorkerRow
from rerankdb.config import BACKENDS, DEFAULT_DIM, MAX_RETAIN_DAYS, STORAGES, Settings, parse_dim
from rerankdb.errors import ConfigError, RerankdbError
from rerankdb.progress import Progress

if TYPE_CHECKING:
    from rerankdb.worker import Worker

Handler = Callable[[argparse.Namespace, Settings], int]


def _dim(raw: str) -> int:
    try:
        return parse_dim(raw, "--dim")
    except RerankdbError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _id_list(raw: str) -> list[int]:
    try:
        return [int(x) for x in raw.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected item ids separated by commas (5,17,42), got {raw!r}"
        ) from None


# --- handlers ---------------------------------------------------------------------


def cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    if args.citus and args.to != "head":
        raise ConfigError(
            "--citus installs or upgrades to head only (the layout is written for it); drop --to"
        )
    if args.sql:
        print(migrate.upgrade_sql(revision=args.to, dim=args.dim, storage=args.storage), end="")
        if args.citus:
            print("\n-- Then, with psql on the coordinator, the distributed layout:\n")
            print(citus.LAYOUT.read_text(), end="")
        return 0
    if args.citus and not settings.database_url:
        url = citus.up(settings.home).url()  # the local cluster (rerankdb citus up)
    else:
        url = embedded.resolve_url(settings)
    migrate.upgrade(url, revision=args.to, dim=args.dim, storage=args.storage)
    print(f"rerankdb schema at revision {migrate.current_revision(url)}")
    if args.citus:
        print(citus.apply_layout(url, shard_count=args.shard_count))
    return 0


def cmd_citus(args: argparse.Namespace, settings: Settings) -> int:
    if args.action == "up":
        cluster = citus.up(settings.home, workers=args.workers)
        print(f"Citus running: a coordinator and {len(cluster.ports) - 1} workers, data in {cluster.root}")
        print(cluster.url())
    elif args.action == "down":
        print("stopped" if citus.down(settings.home, delete=args.delete) else "no local cluster")
    else:
        running = citus.running_cluster(settings.home)
        if running is None:
            print("rerankdb: the local Citus cluster is not running (rerankdb citus up)", file=sys.stderr)
            return 1
        print(running.url())
    return 0


def cmd_db(args: argparse.Namespace, settings: Settings) -> int:
    if args.action == "start":
        url = embedded.start(settings.home)
        print(f"embedded PostgreSQL running, data in {embedded.pgdata_dir(settings.home)}")
        print(url)
    elif args.action == "stop":
        print("stopped" if embedded.stop(settings.home) else "not running")
    else:
        running = embedded.running_url(settings.home)
        if running is None:
            print("rerankdb: the embedded server is not running (rerankdb db start)", file=sys.stderr)
            return 1
        print(db.with_database(running, args.database) if args.database else running)
    return 0


@contextmanager
def _client(settings: Settings) -> Iterator[Client]:
    with Client(embedded.resolve_url(settings), read_url=settings.read_url, max_connections=1) as client:
        yield client


def print_ranked(rows: Sequence[Ranked]) -> None:
    if not rows:
        print("(no rows)")
        return
    width = max(len(str(r.item_id)) for r in rows)
    print(f"{'rank':>4}  {'item':>{width}}  score")
    for r in rows:
        score = "-" if r.score is None else f"{r.score:.4f}"
        print(f"{r.rank:>4}  {r.item_id:>{width}}  {score}")


def cmd_rerank(args: argparse.Namespace, settings: Settings) -> int:
    with _client(settings) as client:
        print_ranked(
            client.rerank(
                args.user_id,
                args.items,
                args.k,
                diversity=args.diversity,
                context_items=args.context,
                exclude_seen=args.exclude_seen,
            )
        )
    return 0


def cmd_explain(args: argparse.Namespace, settings: Settings) -> int:
    with _client(settings) as client:
        reasons = client.explain(args.user_id, args.items, n=args.n)
    if not reasons:
        print("(no reasons: the user has no interactions, or the items no vectors)")
        return 0
    print(f"{'item':>10}  {'because of':>10}  {'contribution':>12}  last interaction")
    for r in reasons:
        print(
            f"{r.item_id:>10}  {r.because_item_id:>10}  {r.contribution:>12.4f}  {r.occurred_at:%Y-%m-%d %H:%M}"
        )
    return 0


def cmd_recommend(args: argparse.Namespace, settings: Settings) -> int:
    with _client(settings) as client:
        print_ranked(client.recommend(args.user_id, args.k, exclude_seen=not args.include_seen))
    return 0


def cmd_similar(args: argparse.Namespace, settings: Settings) -> int:
    with _client(settings) as client:
        print_ranked(client.similar_items(args.item_id, args.k))
    return 0


# The worker's part of Client.status(), in the order of the rerankdb.status view.
WORKER_FIELDS = (
    "pending_items",
    "failed_items",
    "pending_interactions",
    "deferred_interactions",
    "interaction_lag",
    "item_lag",
    "last_item_refresh_at",
    "last_user_refresh_at",
    "last_rebuild_at",
    "model",
    "failed_interactions",
    "users_to_rebuild",
    "last_interaction_error",
)


def cmd_forget(args: argparse.Namespace, settings: Settings) -> int:
    with _client(settings) as client:
        n = client.forget_user(args.user_id)
    print(f"forgot user {args.user_id}: {n} interactions deleted, with their state and vectors")
    return 0


def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    with _client(settings) as client:
        st = client.status()
        read_lag = client.read_lag() if settings.read_url else None
    print(f"database        {'RERANKDB_DATABASE_URL' if settings.database_url else 'embedded'}")
    if read_lag is not None:
        print(f"read server     RERANKDB_READ_URL, {read_lag} bytes of WAL behind")
    print(f"schema revision {st.schema_revision}")
    print(f"dimension       {st.dimension} ({st.storage})")
    print(f"items           {st.items} ({st.item_vectors} with vectors)")
    print(f"user vectors    {st.user_vectors}")
    print(f"interactions    {st.interactions}")
    if st.text_index != "valid":
        print(
            f"warning: the text index is {st.text_index} (a load is rebuilding it, or one was interrupted): "
            "searches scan every item vector until `rerankdb load items FILE --index rebuild` (as the "
            "owner; an empty FILE will do) builds it"
        )
    values = asdict(st)
    for name in WORKER_FIELDS:
        value = values[name]
        print(f"{name.replace('_', ' '):<23} {'-' if value is None else value}")
    if st.compacted_before is not None:
        print(
            f"{'compacted before':<23} {st.compacted_before:%Y-%m-%d %H:%M %Z} (at {st.last_compact_at:%Y-%m-%d %H:%M})"
        )
    _print_workers(st.workers)
    return 0


def _print_workers(workers: Sequence[WorkerRow]) -> None:
    """The worker processes seen in the last day: their totals since they started."""
    if not workers:
        print("workers                 none seen in the last day")
        return
    print(f"workers                 {len(workers)} seen in the last day")
    print(
        f"  {'worker':<28} {'seen':>8} {'folded':>10} {'embedded':>9} {'set aside':>9} {'rebuilt':>8} {'last drain':>10}"
    )
    for w in workers:
        seen = f"{w.seen_ago.total_seconds():.0f} s ago"
        last = "-" if w.last_drain_seconds is None else f"{w.last_drain_seconds * 1000:.1f} ms"
        print(
            f"  {w.host + ':' + str(w.pid):<28} {seen:>8} {w.interactions_folded:>10} {w.items_embedded:>9} "
            f"{w.interactions_set_aside:>9} {w.users_rebuilt:>8} {last:>10}"
        )


def cmd_load(args: argparse.Namespace, settings: Settings) -> int:
    from rerankdb.load import describe, iter_errors

    with (
        _client(settings) as client,
        Progress(f"loading {args.what}", " rows", sys.stderr) as bar,
    ):
        common = {"format": args.format, "reject_file": args.reject_file, "progress": bar.update}
        if args.what == "items":
            report = client.load_items(args.path, index=args.index, build_memory=args.build_memory, **common)
        else:
            report = client.load_interactions(args.path, **common)
    line = f"loaded {describe(report, args.what)} in {report.seconds:.1f} s"
    if report.index == "rebuilt":
        line += f"; text index built once, in {report.index_seconds:.1f} s"
    print(line)
    if report.rejected:
        print(f"rejected {report.rejected} lines, written to {args.reject_file}:", file=sys.stderr)
        for text in iter_errors(report):
            print(f"  {text}", file=sys.stderr)
        if report.rejected > len(report.errors):
            print(f"  ... and {report.rejected - len(report.errors)} more", file=sys.stderr)
    return 0


def cmd_eval(args: argparse.Namespace, settings: Settings) -> int:
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


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from rerankdb import demo

    return demo.run(settings, keep=args.keep, database=args.database)


def _worker(args: argparse.Namespace, settings: Settings, *, listen: bool = True) -> Worker:
    """A Worker on the configured database, with the encoder unless --no-encoder."""
    from rerankdb import encoder as enc
    from rerankdb.worker import Worker

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # APScheduler logs every run of the poll job at INFO: two lines a second, no news.
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    url = embedded.resolve_url(settings)
    encoder = None
    if not args.no_encoder:
        print("loading the encoder...", file=sys.stderr)
        encoder = enc.from_settings(settings, args.backend)
    return Worker(url, settings, encoder, listen=listen)


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    worker = _worker(args, settings, listen=not args.no_listen)
    if not args.once:
        worker.run()
        return 0
    report = worker.run_once()
    print(
        f"drained in {report.seconds:.2f} s: {report.items_embedded} items embedded, "
        f"{report.items_unchanged} unchanged, {report.items_failed} failed; "
        f"{report.interactions_folded} interactions folded, {report.interactions_deferred} deferred"
    )
    return 0


def cmd_train(args: argparse.Namespace, settings: Settings) -> int:
    sequence = settings.sequence and not args.no_sequence
    with Progress("sequence model", " epochs", sys.stderr) as bar:
        report = _worker(args, settings).train(sequence=sequence, progress=lambda epoch, _: bar.update(epoch))
    if report.dim == 0:
        print("not enough interactions to train collaborative vectors yet")
        return 0
    print(
        f"trained {report.dim}-d collaborative vectors for {report.items} items from "
        f"{report.interactions} interactions of {report.users} users in {report.seconds:.1f} s"
    )
    if report.sequence_epochs:
        print(
            f"trained the sequence model in {report.sequence_epochs} epochs ({report.sequence_seconds:.1f} s)"
        )
    elif sequence:
        print(
            f"the sequence model is trained from {sequence_space.MIN_USERS} users with two positive "
            "interactions or more: not enough yet"
        )
    return 0


def cmd_rebuild(args: argparse.Namespace, settings: Settings) -> int:
    worker = _worker(args, settings)
    if args.items:
        n = worker.requeue_all_items()
        print(f"re-embedding {n} items...", file=sys.stderr)
        worker.drain_once()
    with Progress("rebuilding users", " users", sys.stderr) as bar:
        counted = worker.rebuild(progress=bar.update)
    print(f"rebuilt user vectors from {counted} interactions")
    return 0


def cmd_compact(args: argparse.Namespace, settings: Settings) -> int:
    from rerankdb import compact
    from rerankdb import encoder as enc
    from rerankdb.worker import Worker

    before = args.before if args.before is not None else compact.cutoff_from_age(args.older_than)
    url = embedded.resolve_url(settings)
    with db.connect(url, autocommit=True) as conn:
        pv = compact.preview(conn, before)
    when = f"{before.astimezone(timezone.utc):%Y-%m-%d %H:%M} UTC"
    if args.dry_run:
        print(
            f"{pv.older} interactions are older than {when}: {pv.older - pv.not_compactable} would be "
            f"compacted, {pv.not_compactable} kept (queued, or their item has no vector)"
        )
        return 0
    encoder = None
    if pv.with_context and settings.context_weight > 0 and not args.no_encoder:
        print("loading the encoder (the compacted rows carry context text)...", file=sys.stderr)
        encoder = enc.from_settings(settings, args.backend)
    worker = Worker(url, settings, encoder, listen=False)
    with Progress("compacting", " users", sys.stderr) as bar:
        report = worker.compact(before, progress=bar.update)
    print(
        f"compacted {report.interactions} interactions of {report.users} users older than {when} "
        f"into their snapshots in {report.seconds:.1f} s; {report.kept} kept"
    )
    return 0


def _timestamp(raw: str) -> datetime:
    """An ISO 8601 time or date for argparse; no offset means UTC."""
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be an ISO 8601 time like 2026-06-01 or 2026-06-01T12:00+02:00, got {raw!r}"
        ) from None
    return value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)


def _days_of_log(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not 0 < value <= MAX_RETAIN_DAYS:
        raise argparse.ArgumentTypeError(
            f"must be a positive number of days up to {MAX_RETAIN_DAYS} (about 274 years), got {raw!r}"
        )
    return value


def _positive_float(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {raw!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {raw!r}")
    return value


def cmd_tune(args: argparse.Namespace, settings: Settings) -> int:
    from rerankdb import tune_report

    worker = _worker(args, settings, listen=False)
    # Shown from the first step: a log refused up front shows no bar.
    with Progress("tuning (steps of the search)", " steps", sys.stderr) as bar:
        report = worker.tune(
            objective=args.objective,
            dry_run=args.dry_run,
            max_users=args.max_users,
            seed=args.seed,
            progress=bar.update,
            sequence=not args.no_sequence,
        )
    print(tune_report.table(report))
    print()
    print(tune_report.comparison(report))
    print()
    print(tune_report.outcome(report))
    if args.plot:
        tune_report.plot(report, args.plot)
        print(f"plot written to {args.plot}")
    return 0


def _positive_int(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {raw!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {raw!r}")
    return value


# --- the parser --------------------------------------------------------------------


def _encoder_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--backend",
        choices=BACKENDS,
        default=None,
        help="encoder backend (default: $RERANKDB_ENCODER_BACKEND, else fp32)",
    )
    p.add_argument(
        "--no-encoder",
        action="store_true",
        help="do not load the encoder: no item embedding, contexts ignored (bring-your-own vectors)",
    )


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="rerankdb",
        description="Personalized reranking inside PostgreSQL. Uses $RERANKDB_DATABASE_URL, "
        "or an embedded PostgreSQL with pgvector when it is unset ($RERANKDB_HOME holds its data).",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, handler: Handler, **kwargs: Any) -> argparse.ArgumentParser:
        parser = sub.add_parser(name, **kwargs)
        parser.set_defaults(handler=handler)
        return parser

    m = command("migrate", cmd_migrate, help="install or upgrade the rerankdb schema (Alembic)")
    m.add_argument(
        "--dim",
        type=_dim,
        help=f"embedding dimension at install (default: $RERANKDB_DIM, else {DEFAULT_DIM})",
    )
    m.add_argument(
        "--storage",
        choices=STORAGES,
        help="item text vectors as vector (4 bytes a component) or halfvec (2: half the memory), "
        "chosen at install (default: $RERANKDB_STORAGE, else vector)",
    )
    m.add_argument("--to", default="head", metavar="REVISION", help="target revision (default head)")
    m.add_argument("--sql", action="store_true", help="print the SQL script instead of running it")
    m.add_argument(
        "--citus",
        action="store_true",
        help="then distribute it over Citus (sql/citus/layout.sql; re-runnable): on $RERANKDB_DATABASE_URL, "
        "a Citus coordinator, else on the local cluster (rerankdb citus up)",
    )
    m.add_argument(
        "--shard-count",
        type=int,
        default=32,
        metavar="N",
        help="with --citus, at the first distribution: shards of the user tables (default 32)",
    )

    ci = command("citus", cmd_citus, help="a local Citus cluster for development and tests")
    ci.add_argument(
        "action",
        choices=["up", "down", "url"],
        help="up: build Citus once (from $RERANKDB_CITUS_SOURCE) and start a coordinator and workers; "
        "down: shut them down; url: print the coordinator's URL",
    )
    ci.add_argument("--workers", type=int, default=2, help="with up, at creation: worker nodes (default 2)")
    ci.add_argument("--delete", action="store_true", help="with down: delete the cluster's data too")

    d = command("db", cmd_db, help="the embedded PostgreSQL server")
    d.add_argument("action", choices=["start", "stop", "url"], help="start it, stop it, or print its URL")
    d.add_argument(
        "database", nargs="?", default=None, help="with url: another database on it (e.g. rerankdb_demo)"
    )

    r = command("rerank", cmd_rerank, help="reorder candidate items for a user")
    r.add_argument("user_id", type=int, metavar="USER", help="the user to personalize for (any id)")
    r.add_argument(
        "items", type=int, nargs="+", metavar="ITEM", help="the candidates, in the retriever's order"
    )
    r.add_argument("-k", type=int, default=None, help="return only the first K")
    r.add_argument(
        "--diversity",
        type=float,
        default=0.0,
        metavar="D",
        help="MMR trade-off in [0, 1]: 0 off (default), 0.3 some diversity; chooses the first K "
        "(100 without -k) from all the candidates",
    )
    r.add_argument(
        "--context",
        type=_id_list,
        default=None,
        metavar="ITEM,ITEM",
        help="items the user is looking at (a product page, a cart), comma-separated, mixed into the query with "
        "settings.context_items_weight; a user without a vector is ranked by them alone",
    )
    r.add_argument(
        "--exclude-seen", action="store_true", help="drop the items the user has a positive interaction with"
    )

    ex = command(
        "explain", cmd_explain, help="why items score as they do for a user: the interactions behind it"
    )
    ex.add_argument("user_id", type=int, metavar="USER", help="the user")
    ex.add_argument("items", type=int, nargs="+", metavar="ITEM", help="the items to explain")
    ex.add_argument("-n", type=int, default=3, help="reasons per item (default 3)")

    rec = command(
        "recommend",
        cmd_recommend,
        help="the catalog's best items for a user (text and collaborative indexes)",
    )
    rec.add_argument("user_id", type=int, metavar="USER", help="the user")
    rec.add_argument("-k", type=int, default=10, help="how many (default 10)")
    rec.add_argument("--include-seen", action="store_true", help="keep items the user interacted with")

    s = command("similar", cmd_similar, help="nearest items to an item")
    s.add_argument("item_id", type=int, metavar="ITEM", help="the item whose neighbours to find")
    s.add_argument("-k", type=int, default=10, help="how many (default 10)")

    command("status", cmd_status, help="schema revision, dimension, counts and the worker's backlog")

    fg = command("forget", cmd_forget, help="erase a user: interactions, state and vectors")
    fg.add_argument("user_id", type=int, metavar="USER", help="the user to erase")

    ld = command(
        "load",
        cmd_load,
        help="bulk-load items or interactions from a JSON Lines, CSV or Parquet file",
        description="Stream a file into rerankdb through COPY. Items: item_id, content, optional "
        "metadata (a JSON object) and embedding (a list of numbers; items without one are queued for "
        "the worker). Interactions: user_id, item_id, optional kind (default view), weight, context, "
        "occurred_at (ISO 8601, UTC without an offset, or seconds since the epoch; default now). "
        "Strict: a bad line stops the load, naming it, and nothing is written, unless --reject-file.",
    )
    ld.add_argument("what", choices=["items", "interactions"], help="which table the file fills")
    ld.add_argument("path", type=Path, metavar="FILE", help=".jsonl, .csv or .parquet (optionally .gz)")
    ld.add_argument("--format", choices=["jsonl", "csv", "parquet"], help="if the file name does not say")
    ld.add_argument(
        "--reject-file",
        type=Path,
        metavar="PATH",
        help="write bad lines there (Parquet rows as JSON Lines) and load the rest",
    )
    ld.add_argument(
        "--index",
        choices=["auto", "rebuild", "incremental"],
        default="auto",
        help="items: build the text HNSW index once at the end (rebuild, the owner only), insert "
        "into it row by row (incremental), or choose by the load's size (auto, the default)",
    )
    ld.add_argument(
        "--build-memory",
        default="1GB",
        metavar="SIZE",
        help="maintenance_work_mem for the index build (default 1GB; about 2 kB per item at 384-d)",
    )

    ev = command("eval", cmd_eval, help="offline evaluation against baselines on real data")
    ev.add_argument("dataset", choices=["movielens"], help="the data format")
    ev.add_argument("path", type=Path, help="folder with ratings.csv and movies.csv (ml-latest-small format)")
    ev.add_argument("--out", type=Path, default=Path("eval-out"), help="where results go (default eval-out/)")
    ev.add_argument("--seed", type=int, default=42, help="fixes the candidate lists (default 42)")
    ev.add_argument("--backend", choices=BACKENDS, default="fp32", help="encoder backend (default fp32)")
    ev.add_argument(
        "--collab-dim",
        type=int,
        default=None,
        help="collaborative dimension to train (default: the shipped setting)",
    )

    dm = command("demo", cmd_demo, help="see it work: sample catalog, users, live reranking")
    dm.add_argument("--keep", action="store_true", help="leave the demo database (and server) running")
    dm.add_argument(
        "--database",
        default="rerankdb_demo",
        metavar="NAME",
        help="the database the demo creates (replaced if it exists; default rerankdb_demo)",
    )

    w = command("worker", cmd_worker, help="keep item and user vectors fresh (runs until SIGTERM)")
    w.add_argument("--once", action="store_true", help="drain all pending work, then exit")
    w.add_argument("--no-listen", action="store_true", help="poll only ($RERANKDB_POLL_SECONDS), no LISTEN")
    _encoder_arguments(w)

    tr = command(
        "train",
        cmd_train,
        help="learn collaborative item vectors and the sequence model from the log, then rebuild users",
    )
    tr.add_argument(
        "--no-sequence",
        action="store_true",
        help="keep the stored sequence model (and the users' sequence vectors from it); default: train it",
    )
    _encoder_arguments(tr)

    tu = command(
        "tune",
        cmd_tune,
        help="choose half-lives and blend weights on this database's own log, and write them",
    )
    tu.add_argument(
        "--objective",
        choices=["mean", "uniform", "popular"],
        default="mean",
        help="NDCG@10 on uniformly sampled candidates, popularity-sampled ones, or their mean (default)",
    )
    tu.add_argument("--dry-run", action="store_true", help="only measure and print; write nothing")
    tu.add_argument(
        "--max-users", type=_positive_int, default=2000, help="held-out users sampled (default 2000)"
    )
    tu.add_argument("--seed", type=int, default=0, help="fixes the sample and the lists (default 0)")
    tu.add_argument(
        "--no-sequence",
        action="store_true",
        help="keep settings.sequence_weight (default: train a sequence model on the held-out log, "
        "minutes on a large one, and choose it)",
    )
    tu.add_argument("--plot", type=Path, default=None, metavar="PNG", help="also plot what was tried")
    _encoder_arguments(tu)

    rb = command(
        "rebuild", cmd_rebuild, help="recompute every user vector from the log (after a weight change)"
    )
    rb.add_argument("--items", action="store_true", help="re-embed every item first (after a model change)")
    _encoder_arguments(rb)

    cp = command(
        "compact",
        cmd_compact,
        help="fold the interactions older than a cutoff into user snapshots and delete them (a bounded log)",
    )
    cutoff = cp.add_mutually_exclusive_group(required=True)
    cutoff.add_argument(
        "--before", type=_timestamp, metavar="TIME", help="the cutoff, ISO 8601 (no offset: UTC)"
    )
    cutoff.add_argument(
        "--older-than", type=_days_of_log, metavar="DAYS", help="the cutoff: keep this many days of log"
    )
    cp.add_argument("--dry-run", action="store_true", help="count what would be compacted; write nothing")
    _encoder_arguments(cp)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        handler: Handler = args.handler
        return handler(args, Settings.from_env())
    except BrokenPipeError:
        # The reader went away (`rerankdb status | head -3`): not an error.  Point
        # stdout at nothing so that flushing it at exit does not raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except alembic.util.CommandError as exc:  # an unknown revision, say
        print(f"rerankdb: {exc}", file=sys.stderr)
        return 1
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
