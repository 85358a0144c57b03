"""``rerankdb demo``: the product working end to end, in one command.

Starts the embedded PostgreSQL (or uses RERANKDB_DATABASE_URL), installs the
schema in a database of its own, loads the sample catalog, records a short
history for example users, runs the worker, and shows one user's candidate
list before and after personalization.  Then it records a new interaction
live, waits for the running worker, and shows the ranking move with the
measured delay.  It ends with the SQL an application would run.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

from rerankdb import Client, Interaction, Item, db, embedded, migrate
from rerankdb.config import Settings
from rerankdb.progress import Progress
from rerankdb.sample_catalog import catalog
from rerankdb.sqlfiles import queries

Q = queries("demo")

# The retriever's list, as a search for "gift ideas" might return it: two
# items of each of six topics, interleaved.
CANDIDATES = [100, 300, 500, 200, 700, 600, 101, 301, 501, 201, 701, 601]

# Ada likes the stars and code, and skips football: what she did over the last
# weeks (one interaction every three days).
PAST = [
    (1, 103, "purchase", None),
    (1, 104, "like", None),
    (1, 110, "view", None),
    (1, 503, "like", "learn python"),
    (1, 505, "view", None),
    (1, 702, "skip", None),
    (2, 203, "purchase", None),  # Ben cooks
    (2, 206, "like", None),
    (3, 402, "like", None),  # Cleo listens to jazz
    (3, 405, "add_to_cart", None),
]
# What Ada does live: she buys a cookbook.
LIVE = [Interaction(1, 205, "purchase")]
DIVERSITY = 0.3  # the documented "some diversity"
VISITOR = 99  # a user with no history
PAGE = 302  # the product page the visitor looks at (a hiking film)


def history(now: datetime) -> list[Interaction]:
    return [
        Interaction(u, i, kind, context=ctx, occurred_at=now - timedelta(days=3 * (len(PAST) - k)))
        for k, (u, i, kind, ctx) in enumerate(PAST)
    ]


def long_term_top(url: str, k: int) -> list[int]:
    """Ada's top k with the long-term vector alone: the short-term weights set to 0 in a
    transaction that is rolled back (nothing changes for anyone else)."""
    with db.connect(url) as conn:
        conn.execute(Q["long_term_only"])
        rows = conn.execute(Q["top"], {"user": 1, "candidates": CANDIDATES, "k": k}).fetchall()
        conn.rollback()
    return [r[0] for r in rows]


def _say(message: str) -> None:
    print(message, flush=True)


def _wait(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"the worker did not finish {what} within {timeout:.0f} s")
        time.sleep(0.01)


def _table(rows: list[tuple[int, float | None, int, str]], moves: dict[int, int] | None = None) -> str:
    lines = [f"  {'rank':>4}  {'item':>4}  {'score':>6}  {'move':>4}  text"]
    for rank, score, item, text in rows:
        s = "     -" if score is None else f"{score:6.3f}"
        move = ""
        if moves is not None:
            delta = moves.get(int(item), 0)
            move = f"+{delta}" if delta > 0 else (str(delta) if delta < 0 else "=")
        lines.append(f"  {rank:>4}  {item:>4}  {s}  {move:>4}  {text}")
    return "\n".join(lines)


def kept_message(database: str, url: str, *, embedded_server: bool) -> str:
    """How to reach the kept demo database: rerankdb's commands and Client.from_env() use
    RERANKDB_DATABASE_URL, else the embedded server's database ``rerankdb``, not this one."""
    candidates = " ".join(str(i) for i in CANDIDATES)
    lines = [
        f"\nKept: database {database!r} at {url}",
        f"  in SQL:         psql '{url}'",
        f"  with rerankdb:  export RERANKDB_DATABASE_URL='{url}'",
        f"                  rerankdb rerank 1 {candidates}",
        "  (without RERANKDB_DATABASE_URL, rerankdb commands and Client.from_env() use the database",
        f"  {'rerankdb' if embedded_server else 'it names'}, not {database!r})",
    ]
    if embedded_server:
        lines.append(f"  its URL again:  rerankdb db url {database}")
        lines.append("  stop the server later: rerankdb db stop")
    return "\n".join(lines)


def run(settings: Settings, *, keep: bool = False, database: str = "rerankdb_demo") -> int:
    started_server = False
    if settings.database_url:
        server = settings.database_url
        _say("Using the PostgreSQL at RERANKDB_DATABASE_URL.")
    else:
        started_server = embedded.running_url(settings.home) is None
        _say(f"Starting the embedded PostgreSQL (data in {embedded.pgdata_dir(settings.home)})...")
        server = embedded.start(settings.home)
    url = db.create_database(server, database, replace=True)
    from rerankdb.encoder import from_settings
    from rerankdb.worker import Worker

    worker: Worker | None = None
    thread: threading.Thread | None = None
    try:
        migrate.upgrade(url)
        _say(f"Installed the rerankdb schema in database {database!r}.")
        t0 = time.perf_counter()
        _say("Loading the encoder (all-MiniLM-L6-v2, from its PyPI package)...")
        encoder = from_settings(settings)
        _say(f"  loaded in {time.perf_counter() - t0:.1f} s")
        items = catalog()
        texts = {i: text for i, _, text in items}
        topics = {i: topic for i, topic, _ in items}
        with Client(url) as client:
            client.upsert_items(Item(i, text, {"topic": topic}) for i, topic, text in items)
            worker = Worker(url, settings, encoder)
            thread = threading.Thread(target=worker.run, kwargs={"install_signals": False}, daemon=True)
            thread.start()
            _say(
                f"Embedding the sample catalog ({len(items)} items across 8 topics) with the running worker:"
            )

            with Progress("  items", " items", sys.stdout) as bar:
                while bar.done < len(items):
                    time.sleep(0.2)
                    bar.update(client.status().item_vectors, len(items))
            client.record_interactions(history(datetime.now(timezone.utc)))
            _wait(
                lambda: len(client.rerank(3, [400])) == 1 and client.rerank(3, [400])[0].score is not None,
                60,
                "the history",
            )

            def show(title: str, moves: dict[int, int] | None = None) -> list[int]:
                ranked = client.rerank(1, CANDIDATES)
                _say(title)
                _say(
                    _table(
                        [
                            (r.rank, r.score, r.item_id, f"[{topics[r.item_id]}] {texts[r.item_id]}")
                            for r in ranked
                        ],
                        moves,
                    )
                )
                return [r.item_id for r in ranked]

            _say("\nAda (user 1) has bought a telescope kit, liked an astronomy guide and a Python course,")
            _say("and skipped a football replay. Her retriever returns these candidates:\n")
            _say(_table([(k + 1, None, i, f"[{topics[i]}] {texts[i]}") for k, i in enumerate(CANDIDATES)]))
            before = show("\nReranked for Ada by rerankdb.rerank (cosine similarity to her vector):")

            _say("\nNow Ada buys a cookbook (item 205), live...")
            t0 = time.perf_counter()
            client.record_interactions(LIVE)
            _wait(
                lambda: [r.item_id for r in client.rerank(1, CANDIDATES)] != before, 30, "the new interaction"
            )
            delay_ms = (time.perf_counter() - t0) * 1000
            after = [r.item_id for r in client.rerank(1, CANDIDATES)]
            moves = {i: before.index(i) - after.index(i) for i in after}
            show(f"\nThe ranking {delay_ms:.0f} ms after the INSERT committed (move = places gained):", moves)
            _say(
                "\nThe newest interest leads: rerank blends Ada's long-term vector (weeks of history, "
                "half-life 30 days)\nwith her short-term one (the last minutes, half-life 10 minutes), "
                "half and half (rerankdb.settings).\nWith the long-term vector alone her top 3 would be:"
            )
            for rank, item in enumerate(long_term_top(url, 3), start=1):
                _say(f"  {rank:>4}  {item:>4}  [{topics[item]}] {texts[item]}")

            top = after[:3]
            _say("\nWhy (rerankdb.explain: the interactions that contribute most to each score):")
            for reason in client.explain(1, top, n=1):
                why = reason.because_item_id
                _say(f"  {reason.item_id:>4}  because of {why} [{topics[why]}] {texts[why]}")

            diverse = client.rerank(1, CANDIDATES, 6, diversity=DIVERSITY)
            _say(
                f"\nHer top 6 covers {len({topics[i] for i in after[:6]})} topics; with diversity => "
                f"{DIVERSITY} (MMR) it covers {len({topics[r.item_id] for r in diverse})}:"
            )
            for r in diverse:
                _say(f"  {r.rank:>4}  {r.item_id:>4}  [{topics[r.item_id]}] {texts[r.item_id]}")

            visitor = client.rerank(VISITOR, CANDIDATES, 3, context_items=[PAGE])
            _say(
                f"\nA first-time visitor (no history) on the page of item {PAGE} ([{topics[PAGE]}] {texts[PAGE]}):"
                f"\nrerank with context_items => array[{PAGE}] ranks by the page alone. Top 3:"
            )
            for r in visitor:
                _say(f"  {r.rank:>4}  {r.item_id:>4}  [{topics[r.item_id]}] {texts[r.item_id]}")
        _say("\nAn application gets the same result with one SQL call, from any language:\n")
        _say(f"  select * from rerankdb.rerank(1, array{CANDIDATES});")
        _say(f"  select * from rerankdb.rerank(1, array{CANDIDATES}, 6, diversity => {DIVERSITY});")
        _say(f"  select * from rerankdb.explain(1, array{after[:3]});")
        _say("\nand records what users do with a plain INSERT:\n")
        _say("  insert into rerankdb.interactions (user_id, item_id, kind) values (1, 205, 'purchase');")
    finally:
        if worker is not None and thread is not None:
            worker.request_stop()
            thread.join(timeout=60)
        if keep:
            _say(kept_message(database, url, embedded_server=not settings.database_url))
        else:
            db.drop_database(server, database)
            if started_server:
                embedded.stop(settings.home)
            _say("\nCleaned up (use --keep to explore the demo database afterwards).")
    return 0


if __name__ == "__main__":
    sys.exit(run(Settings.from_env()))
