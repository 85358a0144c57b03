"""A bounded log: fold the interactions older than a cutoff into user snapshots, delete them.

A user's state is a decayed sum over their log, and the decayed sum of a
union is the sum of the parts decayed to a common time (``rerankdb.fold``).
So the rows before a cutoff can be replaced by their sum: compaction folds
them, with the fold's own arithmetic, into ``rerankdb.user_snapshot`` and
deletes them from ``rerankdb.interactions``.  A rebuild starts from the
snapshot instead of from zero and folds the log that is left on top: it
equals the incremental state as before (to float32 rounding).

Only rows that the user's state counts are compacted: not queued (pending,
deferred or set aside rows stay) and with an item vector.  One REPEATABLE READ
transaction per batch of users, under the shared fold lock, the users' states locked as
a fold locks them: a reader of the log sees a row in the log or in the
snapshot, never both and never neither.

What a snapshot cannot do (the price of a bounded log):

- ``explain``, ``rerankdb tune`` and ``rerankdb train`` see the log that is
  left: a training learns from the retained window, and the compacted rows'
  collaborative part is dropped at the next training (their text part stays);
- a half-life changed later decays the snapshot as one block from its
  newest row (the rows inside keep the old relative weights);
- a deleted or changed item does not reach into the snapshot.

Statements in ``sql/queries/compact.sql``; ``rerankdb compact`` and the
worker's RERANKDB_COMPACT_CRON job call :func:`compact`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np
import psycopg

from rerankdb import partitions, user_state
from rerankdb.config import MAX_RETAIN_DAYS
from rerankdb.encoder import Encoder, text_budget
from rerankdb.errors import InvalidInputError, PermissionDeniedError, RerankdbError
from rerankdb.sqlfiles import queries
from rerankdb.user_refresh import FoldLockBusy, begin_repeatable_read_batch, without_problems

Q = queries("compact")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CompactReport:
    before: datetime
    users: int  # whose snapshot took rows
    interactions: int  # folded into snapshots and deleted from the log
    kept: int  # older than the cutoff but kept: queued, set aside, item without a vector, or unfoldable
    seconds: float


@dataclass(frozen=True)
class Preview:
    """What a compaction before a cutoff would take (``rerankdb compact --dry-run``)."""

    older: int  # interactions before the cutoff
    with_context: int  # of them, with context text (the fold encodes it: an encoder is needed)
    not_compactable: int  # of them, queued or without an item vector


def preview(conn: psycopg.Connection[Any], before: datetime) -> Preview:
    row = conn.execute(Q["older_than"], {"before": check_cutoff(before)}).fetchone()
    assert row is not None
    return Preview(*map(int, row))


def check_cutoff(before: datetime, now: datetime | None = None) -> datetime:
    """``before`` with a time zone (none given: UTC), and in the past, else InvalidInputError."""
    if not isinstance(before, datetime):
        raise InvalidInputError(f"before must be a datetime, got {before!r}")
    if before.tzinfo is None:
        before = before.replace(tzinfo=timezone.utc)
    now = now or datetime.now(timezone.utc)
    if before > now:
        raise InvalidInputError(
            f"before must be in the past (interactions older than it are compacted), got {before.isoformat()}"
        )
    return before


def cutoff_from_age(days: float, now: datetime | None = None) -> datetime:
    """The cutoff that keeps ``days`` days of log (0 < days <= MAX_RETAIN_DAYS)."""
    if isinstance(days, bool) or not isinstance(days, (int, float)) or not 0 < days <= MAX_RETAIN_DAYS:
        raise InvalidInputError(
            f"the log to keep must be a positive number of days up to {MAX_RETAIN_DAYS} "
            f"(about 274 years), got {days!r}"
        )
    return (now or datetime.now(timezone.utc)) - timedelta(days=days)


def compact(
    conn: psycopg.Connection[Any],
    encoder: Encoder | None,
    context_weight: float,
    dim: int,
    before: datetime,
    *,
    batch_users: int = 500,
    progress: Callable[[int], None] | None = None,
    should_stop: Callable[[], bool] = lambda: False,
) -> CompactReport:
    """Compact the log before ``before``, a batch of users per transaction.

    ``encoder`` folds context text as the worker does; without one, rows with
    context are refused (InvalidInputError, nothing written) unless the
    context weight is 0.  ``progress(users done)`` after each batch.
    Serialization failures against a concurrent rebuild are retried.
    """
    try:
        return _compact(conn, encoder, context_weight, dim, before, batch_users, progress, should_stop)
    except psycopg.errors.InsufficientPrivilege as exc:
        raise PermissionDeniedError(
            "compaction writes the snapshots and deletes from the log, which only the owner may do "
            "unless the DBA allows it: run it as the owner, or as the worker's role after "
            f"`grant delete on rerankdb.interactions to rerankdb_worker` ({str(exc).strip()})"
        ) from None


def _compact(
    conn: psycopg.Connection[Any],
    encoder: Encoder | None,
    context_weight: float,
    dim: int,
    before: datetime,
    batch_users: int,
    progress: Callable[[int], None] | None,
    should_stop: Callable[[], bool],
) -> CompactReport:
    t0 = time.perf_counter()
    before = check_cutoff(before)
    if encoder is None and context_weight > 0 and preview(conn, before).with_context:
        raise InvalidInputError(
            "interactions before the cutoff carry context text, which the fold encodes: "
            "compact with the worker's encoder (rerankdb compact loads it)"
        )
    after, users_done, moved, kept, touched = -(2**63), 0, 0, 0, 0
    while not should_stop():
        batch = [
            r[0]
            for r in conn.execute(
                Q["users_to_compact"], {"before": before, "after": after, "limit": batch_users}
            )
        ]
        if not batch:
            break
        for group in partitions.by_partition(conn, batch):  # on Citus, a transaction per shard
            n_users, n_moved, n_kept = _retrying(
                _compact_users, conn, encoder, context_weight, dim, group, before
            )
            touched, moved, kept = touched + n_users, moved + n_moved, kept + n_kept
        users_done += len(batch)
        after = batch[-1]
        if progress is not None:
            progress(users_done)
    conn.execute(Q["mark_compact"], {"before": before})
    seconds = time.perf_counter() - t0
    log.info(
        "compacted %d interactions of %d users before %s (%d kept) in %.1f s",
        moved,
        touched,
        before.isoformat(),
        kept,
        seconds,
    )
    return CompactReport(before, touched, moved, kept, seconds)


def _retrying(work: Callable[..., tuple[int, int, int]], *args: Any) -> tuple[int, int, int]:
    """``work(*args)``, again while a training holds the fold lock (as long as it does) or a
    concurrent change of the same rows conflicts (10 times)."""
    attempt = 0
    while True:
        try:
            return work(*args)
        except FoldLockBusy:
            time.sleep(0.2)
        except (psycopg.errors.SerializationFailure, psycopg.errors.DeadlockDetected):
            attempt += 1
            if attempt == 10:
                raise
            time.sleep(0.05 * attempt)  # an app changed or deleted these rows meanwhile: again


def _compact_users(
    conn: psycopg.Connection[Any],
    encoder: Encoder | None,
    context_weight: float,
    dim: int,
    users: list[int],
    before: datetime,
) -> tuple[int, int, int]:
    """One batch in one transaction: (users whose snapshot took rows, rows moved, rows kept)."""
    # REPEATABLE READ: a row an app changes or deletes after it is read makes the
    # delete fail (and the batch is retried), never a snapshot of a stale row.
    with conn.transaction():
        clock = begin_repeatable_read_batch(conn, context_weight)
        conn.execute(Q["lock_states"], {"users": users})
        params = {"users": users, "before": before, "max_chars": text_budget(encoder)}
        older = conn.execute(Q["rows_to_compact"], params, binary=True).fetchall()
        rows = [r for r in older if r[7]]
        rows, bad = without_problems(rows, clock) if rows else ([], [])  # unfoldable rows stay in the log
        if not rows:
            return 0, 0, len(older)
        item_vecs = user_state.item_vectors(conn, {r[5] for r in rows})
        arr = np.unique(np.array([r[1] for r in rows], dtype=np.int64))
        st = user_state.snapshot_states(conn, arr, dim, user_state.collab_dim(item_vecs))
        user_state.fold_rows(st, rows, item_vecs, encoder, clock.params)
        user_state.write_snapshots(conn, st, before)
        waiting = [r[0] for r in conn.execute(Q["rebuild_requests"], {"users": arr.tolist()})]
        kept = [r[0] for r, _ in bad]
        deleted = conn.execute(
            Q["delete_rows"], {"users": arr.tolist(), "before": before, "kept": kept}
        ).rowcount
        if deleted != len(rows):  # not in one snapshot after all: write nothing
            raise RerankdbError(
                f"compaction read {len(rows)} rows of users {arr.tolist()} but deleted {deleted}"
            )
        conn.execute(Q["drop_own_rebuild_requests"], {"users": arr.tolist(), "waiting": waiting})
        return len(arr), len(rows), len(older) - len(rows)
