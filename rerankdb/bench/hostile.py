"""Hostile load for the soak benchmark: huge rows, a freshness probe, a pool of Clients.

* :func:`big_rows`: 10 MB item texts and interactions with 10 MB contexts,
  arriving while the others work (one row that is slow to embed must not
  delay the other users' folds);
* :func:`probe`: the time from a committed INSERT of another user's
  interaction until ``rerankdb.rerank`` reflects it (a user of its own each
  time, so "reflects it" means "has a vector");
* :func:`client_pool`: threads that each make a ``Client``, call it and close
  it, counting what fails rather than stopping.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from itertools import count
from typing import Any

import numpy as np
import psycopg

from rerankdb import Client, db

MB10 = 10 * 1024 * 1024
BIG_ITEMS_FROM = 60_001  # item ids of the huge texts
PROBE_USERS_FROM = 10_000_000  # user ids of the freshness probe, one per event
_probe_users = count(PROBE_USERS_FROM)


@dataclass
class BigRows:
    items: int = 0
    contexts: int = 0
    failures: list[str] = field(default_factory=list)


def big_text(n: int) -> str:
    """10 MB of words, different from the first character for each ``n``."""
    head = f"huge row {n}: "
    return head + "word " * ((MB10 - len(head)) // 5)


def big_rows(url: str, stop: threading.Event, per_second: float, items: int, out: BigRows) -> None:
    """Until ``stop``: a 10 MB item text, then an interaction of a random existing item
    with a 10 MB context, in turn, ``per_second`` rows a second."""
    n = 0
    try:
        with db.connect(url, autocommit=True) as conn:
            while not stop.wait(1.0 / per_second):
                text = big_text(n)
                try:
                    if n % 2 == 0:
                        conn.execute(
                            "insert into rerankdb.items (item_id, content) values (%s, %s)",
                            [BIG_ITEMS_FROM + n // 2, text],
                        )
                        out.items += 1
                    else:
                        conn.execute(
                            "insert into rerankdb.interactions (user_id, item_id, kind, context)"
                            " values (%s, %s, 'view', %s)",
                            [1 + n % 997, 1 + (n * 7919) % items, text],
                        )
                        out.contexts += 1
                except psycopg.Error as exc:
                    out.failures.append(f"{type(exc).__name__}: {str(exc).strip()[:200]}")
                n += 1
    except psycopg.Error as exc:
        out.failures.append(f"{type(exc).__name__}: {str(exc).strip()[:200]}")


def reflected(conn: psycopg.Connection[Any], user: int, item: int) -> bool:
    row = conn.execute("select score from rerankdb.rerank(%s, array[%s]::bigint[])", [user, item]).fetchone()
    return row is not None and row[0] is not None


def probe(
    url: str, stop: threading.Event, items: int, out: list[float], failures: list[str], seed: int
) -> None:
    """Until ``stop``: one interaction of a new user at a time, and the wall ms until
    rerank reflects it (given up after 60 s: counted as a failure)."""
    rng = np.random.default_rng(seed)
    while not stop.is_set():
        try:
            with db.connect(url, autocommit=True) as writer, db.connect(url, autocommit=True) as reader:
                while not stop.is_set():
                    user, item = next(_probe_users), int(rng.integers(1, items + 1))
                    writer.execute(
                        "insert into rerankdb.interactions (user_id, item_id, kind) values (%s, %s, 'like')",
                        [user, item],
                    )
                    t0 = time.perf_counter()
                    while not reflected(reader, user, item):
                        if time.perf_counter() - t0 > 60:
                            failures.append(f"user {user}: not reflected after 60 s")
                            break
                        time.sleep(0.001)
                    else:
                        out.append((time.perf_counter() - t0) * 1000)
                    stop.wait(float(rng.uniform(0.02, 0.1)))
        except psycopg.Error as exc:  # a restart: reconnect, count it
            failures.append(f"{type(exc).__name__}: {str(exc).strip()[:200]}")
            stop.wait(0.2)


def wait_ready(url: str, items: int, timeout: float) -> bool:
    """One probe event, however long it takes (the workers loading the encoder)."""
    halt = threading.Event()
    out: list[float] = []
    failures: list[str] = []
    th = threading.Thread(target=probe, args=(url, halt, items, out, failures, 0))
    th.start()
    deadline = time.monotonic() + timeout
    while not out and time.monotonic() < deadline:
        time.sleep(0.1)
    halt.set()
    th.join()
    return bool(out)


def client_pool(url: str, stop: threading.Event, threads: int, made: list[int], failures: list[str]) -> None:
    """``threads`` threads, each making a Client, reranking once and closing it, until ``stop``."""

    def one(seed: int) -> None:
        rng = np.random.default_rng(seed)
        while not stop.is_set():
            try:
                with Client(url, max_connections=1, timeout=10.0) as client:
                    client.rerank(int(rng.integers(1, 1000)), rng.integers(1, 1000, 20))
                made.append(1)
            except Exception as exc:  # counted and printed, never fatal: that is the point
                failures.append(f"{type(exc).__name__}: {str(exc).strip()[:200]}")
                stop.wait(0.1)

    pool = [threading.Thread(target=one, args=(k,)) for k in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
