"""The drain loop: all due work, items first, then users, until none is left.

Users: queued interactions are folded, and users whose log was changed
(deleted or updated interactions) are rebuilt from it.

Above :mod:`rerankdb.item_refresh` and :mod:`rerankdb.user_refresh`, below
the worker's scheduling (:mod:`rerankdb.worker`).  Items go first so that
interactions find their items' vectors; interactions that arrived before
their item's vector are deferred by the user refresh and released here once
the vector exists.

Fairness.  Each round embeds a bounded amount of item text, then folds one
batch of interactions: a backlog of items (or one huge text) never keeps the
users waiting for more than one round's embedding.  The round's budget of
characters follows the encoder's measured speed, so that a round of items
takes about ``ITEM_ROUND_SECONDS`` (at least one text, at most 64 of the
longest the encoder reads); a fold batch bounds the contexts it encodes in
the same way (:mod:`rerankdb.user_refresh`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg

from rerankdb.encoder import Encoder, text_budget
from rerankdb.item_refresh import enqueue_unembedded, refresh_items
from rerankdb.user_refresh import (
    mark_refreshed,
    rebuild_changed_users,
    rebuild_if_half_lives_changed,
    refresh_users,
    release_deferred,
)

log = logging.getLogger(__name__)

ITEM_ROUND_SECONDS = 0.1  # the embedding a round does before it folds users, about
FIRST_ROUND_TEXTS = 4  # the first round's budget, in texts of the longest the encoder reads
MAX_ROUND_TEXTS = 64


class ItemBudget:
    """Characters of item text per round: what the encoder embeds in ITEM_ROUND_SECONDS,
    as measured on the rounds before, between one and MAX_ROUND_TEXTS longest texts."""

    def __init__(self, encoder: Encoder) -> None:
        self.longest = text_budget(encoder)
        self.chars = FIRST_ROUND_TEXTS * self.longest

    def measured(self, chars: int, seconds: float) -> None:
        if chars > 0 and seconds > 0:
            rate = chars / seconds
            self.chars = int(
                min(max(rate * ITEM_ROUND_SECONDS, self.longest), MAX_ROUND_TEXTS * self.longest)
            )


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
    """Do all due work: items first (so interactions find their vectors), then users,
    in rounds of a bounded amount of item text and one batch of interactions.

    First of all, if settings' half-lives changed since the last full rebuild,
    every user is rebuilt with them.  Without an encoder no item is embedded
    (vectors are brought by the app).  ``before_commit`` is passed to each
    user batch (fault injection in tests).
    """
    report = DrainReport()
    t0 = time.perf_counter()
    report.half_lives_changed = rebuild_if_half_lives_changed(conn, encoder, context_weight, dim) is not None
    budget = ItemBudget(encoder) if encoder is not None else None
    if encoder is not None:
        enqueue_unembedded(conn)  # on Citus only: no trigger queues the items there
    while not should_stop():
        progressed = False
        if encoder is not None and budget is not None:
            began = time.perf_counter()
            b = refresh_items(conn, encoder, chars=budget.chars)
            budget.measured(b.chars, time.perf_counter() - began)
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
    if report.interactions_folded:
        mark_refreshed(conn)
    report.seconds = time.perf_counter() - t0
    return report
