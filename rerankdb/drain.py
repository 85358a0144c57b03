"""The drain loop: all due work, items first, then users, until none is left.

Users: queued interactions are folded, and users whose log was changed
(deleted or updated interactions) are rebuilt from it.

Above :mod:`rerankdb.item_refresh` and :mod:`rerankdb.user_refresh`, below
the worker's scheduling (:mod:`rerankdb.worker`).  Items go first so that
interactions find their items' vectors; interactions that arrived before
their item's vector are deferred by the user refresh and released here once
the vector exists.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg

from rerankdb.encoder import Encoder
from rerankdb.item_refresh import refresh_items
from rerankdb.user_refresh import (
    rebuild_changed_users,
    rebuild_if_half_lives_changed,
    refresh_users,
    release_deferred,
)

log = logging.getLogger(__name__)


@dataclass
class DrainReport:
    items_embedded: int = 0
    items_unchanged: int = 0
    items_failed: int = 0
    interactions_folded: int = 0
    interactions_deferred: int = 0
    interactions_set_aside: int = 0
    users_rebuilt: int = 0
    half_lives_changed: bool = False  # every user was rebuilt first (settings' half-lives changed)
    seconds: float = 0.0


def drain(
    conn: psycopg.Connection[Any],
    encoder: Encoder | None,
    context_weight: float,
    dim: int,
    *,
    should_stop: Callable[[], bool] = lambda: False,
    before_commit: Callable[[], None] | None = None,
) -> DrainReport:
    """Do all due work: items first (so interactions find their vectors), then users.

    First of all, if settings' half-lives changed since the last full rebuild,
    every user is rebuilt with them.  Without an encoder no item is embedded
    (vectors are brought by the app).  ``before_commit`` is passed to each
    user batch (fault injection in tests).
    """
    report = DrainReport()
    t0 = time.perf_counter()
    report.half_lives_changed = rebuild_if_half_lives_changed(conn, encoder, context_weight, dim) is not None
    while not should_stop():
        progressed = False
        if encoder is not None:
            b = refresh_items(conn, encoder)
            report.items_embedded += b.embedded
            report.items_unchanged += b.unchanged
            report.items_failed += b.failed
            progressed = b.embedded + b.unchanged > 0
            if b.claimed:
                log.info("items: %d embedded, %d unchanged, %d failed", b.embedded, b.unchanged, b.failed)
        if release_deferred(conn):
            progressed = True
        u = refresh_users(conn, encoder, context_weight, dim, before_commit=before_commit)
        report.interactions_folded += u.folded
        report.interactions_deferred += u.deferred
        report.interactions_set_aside += u.set_aside
        if u.folded or u.deferred or u.set_aside:
            log.info(
                "users: %d interactions folded into %d users, %d deferred, %d set aside",
                u.folded,
                u.users,
                u.deferred,
                u.set_aside,
            )
        rebuilt, _ = rebuild_changed_users(conn, encoder, context_weight, dim)
        report.users_rebuilt += rebuilt
        if rebuilt:
            log.info("users: %d rebuilt after their interactions changed", rebuilt)
        progressed = progressed or u.folded + u.deferred + u.set_aside + rebuilt > 0
        if not progressed:
            break
    report.seconds = time.perf_counter() - t0
    return report
