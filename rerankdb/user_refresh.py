"""User refresh: fold queued interactions into user states and vectors, rebuild users from the log.

The arithmetic is :mod:`rerankdb.fold`, the states in the database
:mod:`rerankdb.user_state`; this module runs the transactions, one batch at
a time, and keeps bad rows from stopping good ones.  Its statements are in
``sql/queries/user_refresh.sql``.

Exactly once.  Interactions are claimed from ``interaction_queue`` with FOR
UPDATE SKIP LOCKED and the queue rows are deleted in the same transaction
that writes the state and vectors they account for: a crash rolls all of it
back, a second worker skips claimed rows, and user_state rows are locked in
user_id order so two workers never fold into the same user at once.  Several
workers: a fold claims from the 16 partitions of the users that no other
fold holds (an advisory lock per partition) until its batch is full, so they
fold disjoint users side by side instead of waiting for each other's
user_state locks.

Items are refreshed by :mod:`rerankdb.item_refresh`, under matching names;
:mod:`rerankdb.drain` runs both.
"""

from __future__ import annotations

import functools
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import numpy as np
import psycopg

from rerankdb import backoff, db, partitions, sequence_space, user_state
from rerankdb.encoder import Encoder, text_budget
from rerankdb.fold import FoldParams, problems
from rerankdb.sqlfiles import queries

Q = queries("user_refresh")
log = logging.getLogger(__name__)
MAX_BACKOFF_SECONDS = 3600
# A fold batch encodes at most this many contexts' worth of the longest the
# encoder reads (8 x 5,120 characters by default; about 800 contexts of 50
# characters): a stream of long contexts delays the other users' rows of a
# batch by a bounded encoding, not by 20,000 of them.
CONTEXT_TEXTS = 8


@dataclass(frozen=True)
class UserBatch:
    folded: int
    deferred: int
    users: int
    set_aside: int = 0  # could not be folded: recorded with their error, retried with backoff

    def __add__(self, other: UserBatch) -> UserBatch:
        return UserBatch(
            self.folded + other.folded,
            self.deferred + other.deferred,
            self.users + other.users,
            self.set_aside + other.set_aside,
        )


def retry_delay(attempts: int) -> float:
    """Seconds before a set-aside interaction is tried again: 5, 10, 20, ... up to an hour."""
    return backoff.exponential(attempts, first=5.0, cap=MAX_BACKOFF_SECONDS)


def refresh_users(
    conn: psycopg.Connection[Any],
    encoder: Encoder | None,
    context_weight: float,
    dim: int,
    limit: int = 20_000,
    *,
    before_commit: Callable[[], None] | None = None,
) -> UserBatch:
    """Fold one batch of queued interactions into user states and vectors.

    No row stops the others: a row that cannot be folded (an infinite or
    future time, an out-of-range weight, written before the checks at the
    door) is set aside with its error; if the batch fails for any other
    reason it is folded again in halves until the failing rows are found and
    set aside.  Set-aside rows are retried with backoff.  A lost connection
    is not the rows' fault: it propagates and the worker retries.
    ``before_commit`` runs just before each batch commits (fault injection in tests).
    """
    fold_args = (encoder, context_weight, dim, before_commit)
    claimed: dict[int, tuple[int, int]] = {}
    max_chars = text_budget(encoder)
    # Contexts are encoded only with an encoder and a context weight.
    context_chars = CONTEXT_TEXTS * max_chars if encoder is not None and context_weight > 0 else None
    try:
        claim = functools.partial(_claim_partitions, conn, limit, max_chars, context_chars)
        return _fold_claimed(conn, claim, claimed, *fold_args)
    except Exception as exc:
        if not claimed or db.lost_connection(exc):
            raise
        log.warning("a batch of %d interactions failed (%s); folding it in parts", len(claimed), exc)
        total, failed = _isolate(conn, claimed, exc, *fold_args)
        if len(failed) == len(claimed) > 1:
            # Every row failed alone: not the rows' fault (an encoder or a privilege
            # missing, say).  Set nothing aside; the worker retries the batch.
            raise
        if failed:
            with conn.transaction():
                _set_aside(conn, failed)
        return total + UserBatch(0, 0, 0, len(failed))


def _claim_partitions(
    conn: psycopg.Connection[Any], limit: int, max_chars: int, context_chars: int | None
) -> list[tuple[Any, ...]]:
    """Up to ``limit`` due interactions, from partitions of users that no other fold
    holds, taken one after another (in a random order, so workers spread out) until
    the batch is full: one worker takes every partition, two share them out.  None
    when every partition with work is taken.  A partition is a range of
    hashint8(user_id) (partitions.py); on Citus a shard, and a batch takes one, so
    that its FOR UPDATE and its writes stay on that shard.  Contexts come cut to
    ``max_chars`` characters; ``context_chars``: the batch is also full once its
    distinct contexts hold that many characters (their encoding bounds how long the
    fold takes)."""
    ranges = partitions.of(conn)
    if ranges.citus:  # the oldest first: each probe of a partition is a query of every shard
        hashes = conn.execute(Q["due_hashes"], {"limit": DUE_SAMPLE}).fetchall()
        parts = list(dict.fromkeys(ranges.index(h) for (h,) in hashes))
    else:
        bounds = {"lower": list(ranges.lower), "upper": list(ranges.upper)}
        parts = [r[0] for r in conn.execute(Q["due_partitions"], bounds).fetchall()]
        random.shuffle(parts)
    rows: list[tuple[Any, ...]] = []
    contexts: set[str] = set()
    for part in parts:
        got = conn.execute(Q["try_lock_partition"], {"part": part}).fetchone()
        if got is not None and got[0]:
            claimed = _claim_partition(conn, ranges, part, limit - len(rows), max_chars)
            kept = within_context_budget(claimed, contexts, context_chars, first=not rows)
            rows += kept
            if len(rows) >= limit or len(kept) < len(claimed) or (ranges.citus and rows):
                break
    return rows


DUE_SAMPLE = 1000  # on Citus, the oldest due interactions whose partitions a fold tries first


def _claim_partition(
    conn: psycopg.Connection[Any], ranges: partitions.Partitions, part: int, limit: int, max_chars: int
) -> list[tuple[Any, ...]]:
    """Up to ``limit`` due interactions of partition ``part``, locked (skipping locked rows)."""
    bounds = {"lower": ranges.lower[part], "upper": ranges.upper[part]}
    if not ranges.citus:
        return conn.execute(Q["claim_interactions"], {**bounds, "limit": limit, "max_chars": max_chars},
                            binary=True).fetchall()  # fmt: skip
    found = conn.execute(Q["users_of_partition"], {**bounds, "limit": limit}).fetchall()
    users = sorted({u for (u,) in found})
    if not users:
        return []
    params = {"users": users, "limit": limit, "max_chars": max_chars}
    return conn.execute(Q["claim_interactions_of_users"], params, binary=True).fetchall()


def within_context_budget(
    rows: Sequence[tuple[Any, ...]], seen: set[str], budget: int | None, *, first: bool
) -> list[tuple[Any, ...]]:
    """The leading ``rows`` whose distinct contexts, with those in ``seen`` (updated),
    hold at most ``budget`` characters; at least one row when ``first``.  The rows left
    out stay queued (locked by this transaction only) for the next batch."""
    if budget is None:
        return list(rows)
    used = sum(len(c) for c in seen)
    for n, row in enumerate(rows):
        ctx = row[3]
        if ctx and ctx.strip() and ctx not in seen:
            if used + len(ctx) > budget and (n > 0 or not first):
                return list(rows[:n])
            seen.add(ctx)
            used += len(ctx)
    return list(rows)


def _claim_by_id(
    conn: psycopg.Connection[Any], ids: list[int], users: list[int], max_chars: int
) -> list[tuple[Any, ...]]:
    """The due interactions among ``ids`` of ``users`` (a failed batch, folded again in parts)."""
    params = {"ids": ids, "users": users, "max_chars": max_chars}
    return conn.execute(Q["claim_interactions_by_id"], params, binary=True).fetchall()


def _fold_claimed(
    conn: psycopg.Connection[Any],
    claim: Callable[[], list[tuple[Any, ...]]],
    claimed: dict[int, tuple[int, int]],
    encoder: Encoder | None,
    context_weight: float,
    dim: int,
    before_commit: Callable[[], None] | None,
) -> UserBatch:
    """Claim (``claim()``, in the transaction), check and fold one batch in one
    transaction; ``claimed`` gets {id: (user, attempts)}."""
    with conn.transaction():
        clock = begin_batch(conn, context_weight)
        rows = claim()
        if not rows:
            return UserBatch(0, 0, 0)
        claimed.update((r[0], (r[1], r[6])) for r in rows)
        rows, bad = without_problems(rows, clock)
        if bad:
            _set_aside(conn, [(r[0], r[1], r[6], error) for r, error in bad])
        item_vecs = user_state.item_vectors(conn, {r[5] for r in rows})
        ready = [r for r in rows if r[5] in item_vecs]
        waiting = [r[0] for r in rows if r[5] not in item_vecs]
        if waiting:  # the item has no vector yet: keep the interaction for later
            conn.execute(Q["defer_interactions"], {"ids": waiting, "users": sorted({r[1] for r in rows})})
        n_users = 0
        if ready:
            users = np.unique(np.array([r[1] for r in ready], dtype=np.int64))
            st = user_state.lock_states(conn, users, dim, user_state.collab_dim(item_vecs))
            user_state.fold_rows(st, ready, item_vecs, encoder, clock.params)
            conn.execute(Q["dequeue_interactions"], {"ids": [r[0] for r in ready], "users": users.tolist()})
            # The sequence vectors from the log, the batch's rows now folded (out of the
            # queue), written with the states.
            user_state.write_states(conn, st, sequence_space.user_rows(conn, users.tolist()))
            n_users = len(users)
        if before_commit is not None:
            before_commit()
    return UserBatch(len(ready), len(waiting), n_users, len(bad))


def _isolate(
    conn: psycopg.Connection[Any],
    ids: dict[int, tuple[int, int]],
    exc: Exception,
    encoder: Encoder | None,
    context_weight: float,
    dim: int,
    before_commit: Callable[[], None] | None,
) -> tuple[UserBatch, list[tuple[int, int, int, str]]]:
    """Fold the interactions of a failed batch ({id: (user, attempts)}) in halves: (what
    was folded, the rows that fail alone as (interaction_id, user_id, attempts so far,
    error)); the caller sets those aside."""
    if len(ids) == 1:
        ((iid, (user, attempts)),) = ids.items()
        return UserBatch(0, 0, 0), [(iid, user, attempts, f"{type(exc).__name__}: {str(exc).strip()}")]
    order = sorted(ids)
    total = UserBatch(0, 0, 0)
    failed: list[tuple[int, int, int, str]] = []
    for part in (order[: len(order) // 2], order[len(order) // 2 :]):
        claimed: dict[int, tuple[int, int]] = {}
        users = sorted({ids[i][0] for i in part})
        try:
            total += _fold_claimed(
                conn,
                functools.partial(_claim_by_id, conn, part, users, text_budget(encoder)),
                claimed,
                encoder,
                context_weight,
                dim,
                before_commit,
            )
        except Exception as part_exc:
            if db.lost_connection(part_exc):
                raise
            if claimed:
                part_total, part_failed = _isolate(
                    conn, claimed, part_exc, encoder, context_weight, dim, before_commit
                )
                total += part_total
                failed += part_failed
    return total, failed


@dataclass(frozen=True)
class Clock:
    """What one fold or rebuild transaction checks and folds with, read from the database."""

    now: float  # now(), epoch seconds
    tolerance: float  # settings.future_tolerance, seconds
    params: FoldParams  # settings' half-lives and the worker's context weight

    @classmethod
    def from_row(cls, row: Sequence[Any], context_weight: float) -> Clock:
        now, tolerance, half_life, short_half_life = row
        return cls(float(now), float(tolerance), FoldParams(half_life, context_weight, short_half_life))


def begin_batch(conn: psycopg.Connection[Any], context_weight: float) -> Clock:
    """Take the shared fold lock (a training's or tuning's switch waits for this batch),
    then read the clock and half-lives, in a statement whose snapshot follows the lock."""
    with conn.pipeline():  # one round trip; the second statement still gets its own snapshot
        conn.execute(Q["begin_batch"])
        cur = conn.execute(Q["batch_settings"])
    row = cur.fetchone()
    assert row is not None
    return Clock.from_row(row, context_weight)


def without_problems(
    rows: Sequence[tuple[Any, ...]], clock: Clock
) -> tuple[list[tuple[Any, ...]], list[tuple[tuple[Any, ...], str]]]:
    """(rows that can be folded, [(row, what is wrong)]), by fold.problems."""
    found = problems(
        np.array([r[4] for r in rows]), np.array([r[2] for r in rows]), clock.now, clock.tolerance
    )
    if not found:
        return list(rows), []
    return [r for i, r in enumerate(rows) if i not in found], [(rows[i], e) for i, e in found.items()]


def _set_aside(conn: psycopg.Connection[Any], failed: Sequence[tuple[int, int, int, str]]) -> None:
    """Record (interaction_id, user_id, attempts so far, error) as failed; retried after a backoff."""
    row = conn.execute(Q["now"]).fetchone()
    assert row is not None
    now = row[0]
    conn.execute(
        Q["set_aside"],
        {
            "ids": [f[0] for f in failed],
            "users": [f[1] for f in failed],
            "errors": [f[3] for f in failed],
            "not_before": [now + timedelta(seconds=retry_delay(f[2] + 1)) for f in failed],
        },
    )
    for iid, _user, attempts, error in failed:
        log.warning("interaction %s set aside (attempt %s): %s", iid, attempts + 1, error)


def mark_refreshed(conn: psycopg.Connection[Any]) -> None:
    """Record when users were last folded (rerankdb.status): once per drain, in its own
    transaction, not in every fold's (on Citus worker_state is a reference table, a copy
    on every node: in a fold it would make each fold a two-phase commit on every node)."""
    conn.execute(Q["mark_user_refresh"])


def release_deferred(conn: psycopg.Connection[Any]) -> int:
    """Make due again the deferred interactions whose item now has a vector.

    The item_vectors trigger does this as vectors arrive; this sweep closes the
    race where a vector commits while its interaction is being deferred.
    """
    return int(conn.execute(Q["release_deferred"]).rowcount)


def rebuild_users(
    conn: psycopg.Connection[Any],
    encoder: Encoder | None,
    context_weight: float,
    dim: int,
    users: Sequence[int],
) -> int:
    """Recompute the states of ``users`` from the whole log; returns interactions counted.

    See :func:`_rebuild`; a concurrent fold makes it fail with a
    serialization error, and the caller retries.
    """
    return _rebuild(conn, encoder, context_weight, dim, users)[1]


def _rebuild(
    conn: psycopg.Connection[Any],
    encoder: Encoder | None,
    context_weight: float,
    dim: int,
    users: Sequence[int],
) -> tuple[int, int]:
    """Recompute the states of ``users`` from the whole log: (users, interactions counted).

    Their rebuild requests (``user_rebuild_queue``) read in the transaction
    are dequeued with it.  Runs in one REPEATABLE READ
    transaction: the queue rows it locks and the log it reads are the same
    snapshot, so nothing is counted twice (queued interactions it counts are
    dequeued) or missed (those whose item has no vector are queued as
    deferred, those that cannot be folded are set aside).  A concurrent fold
    makes it fail with a serialization error; the caller retries.
    """
    with conn.transaction():
        clock = begin_repeatable_read_batch(conn, context_weight)
        return _rebuild_in_transaction(conn, encoder, dim, users, clock)


class FoldLockBusy(Exception):
    """A training holds the fold lock; a rebuild or compaction tries again later."""


def begin_repeatable_read_batch(conn: psycopg.Connection[Any], context_weight: float) -> Clock:
    """First in a REPEATABLE READ transaction (a rebuild, a compaction): the shared fold
    lock without waiting for it, and the clock.  FoldLockBusy while a training or tuning
    holds it (a snapshot taken while waiting would predate its switch)."""
    conn.execute(Q["repeatable_read"])
    got = conn.execute(Q["try_begin_batch"]).fetchone()
    if got is None or not got[0]:
        raise FoldLockBusy
    return Clock.from_row(got[1:], context_weight)


def _rebuild_in_transaction(
    conn: psycopg.Connection[Any],
    encoder: Encoder | None,
    dim: int,
    users: Sequence[int],
    clock: Clock,
) -> tuple[int, int]:
    """The body of :func:`_rebuild`, in the caller's transaction; ``clock`` from begin_batch.
    On Citus, one partition (shard) at a time: a statement that locks rows stays on one shard."""
    done = (0, 0)
    for group in partitions.by_partition(conn, sorted(set(users))):
        n_users, counted = _rebuild_group(conn, encoder, dim, group, clock)
        done = (done[0] + n_users, done[1] + counted)
    return done


def _rebuild_group(
    conn: psycopg.Connection[Any],
    encoder: Encoder | None,
    dim: int,
    ids: list[int],
    clock: Clock,
) -> tuple[int, int]:
    """:func:`_rebuild_in_transaction` for users (sorted, unique) of one partition."""
    requests = conn.execute(Q["rebuild_requests"], {"users": ids}).fetchall()  # before the log
    conn.execute(Q["lock_queued_interactions_of_users"], {"users": ids})
    conn.execute(Q["drop_orphans_of_users"], {"users": ids})
    params = {"users": ids, "max_chars": text_budget(encoder)}
    rows = conn.execute(Q["interactions_of_users"], params, binary=True).fetchall()
    rows, bad = without_problems(rows, clock) if rows else ([], [])
    item_vecs = user_state.item_vectors(conn, {r[5] for r in rows})
    k = user_state.collab_dim(item_vecs)
    arr = np.array(ids, dtype=np.int64)
    user_state.lock_states(conn, arr, dim, k)  # the old states are replaced, but locked first
    ready = [r for r in rows if r[5] in item_vecs]
    waiting = [r for r in rows if r[5] not in item_vecs]
    st = user_state.snapshot_states(conn, arr, dim, k)  # empty but for compacted history
    if ready:
        user_state.fold_rows(st, ready, item_vecs, encoder, clock.params)
    if ready:
        conn.execute(Q["dequeue_interactions"], {"ids": [r[0] for r in ready], "users": ids})
    if waiting:
        conn.execute(Q["requeue_deferred"], {"ids": [r[0] for r in waiting], "users": ids})
    if bad:
        conn.execute(
            Q["set_aside_unqueued"],
            {"ids": [r[0] for r, _ in bad], "users": [r[1] for r, _ in bad], "errors": [e for _, e in bad]},
        )
    # The sequence vectors from the same snapshot of the log, written with the states.
    user_state.write_states(conn, st, sequence_space.user_rows(conn, ids))
    if requests:
        conn.execute(
            Q["dequeue_rebuild_requests"],
            {"users": [r[0] for r in requests], "enqueued": [r[1] for r in requests]},
        )
    return len(ids), len(ready)


PROGRESS_SECONDS = 10.0  # a rebuild of every user logs its progress at most this often


class _RebuildLog:
    """Log lines for a rebuild of every user: its start, its progress at most
    every PROGRESS_SECONDS, and its end.  On a large log it takes minutes, in
    which the worker would otherwise say nothing."""

    def __init__(self, why: str, users: int) -> None:
        self.why = why
        self.users = users
        self.t0 = self.last = time.monotonic()
        log.info("%s: rebuilding every user (%d users)", why, users)

    def advanced(self, done: int) -> None:
        now = time.monotonic()
        if done < self.users and now - self.last >= PROGRESS_SECONDS:
            log.info(
                "%s: %d of %d users rebuilt (%.0f%%, %.0f s)",
                self.why,
                done,
                self.users,
                100.0 * done / self.users,
                now - self.t0,
            )
            self.last = now

    def finished(self, done: int, counted: int) -> None:
        log.info(
            "%s: rebuilt %d of %d users from %d interactions in %.1f s",
            self.why,
            done,
            self.users,
            counted,
            time.monotonic() - self.t0,
        )


def rebuild_all(
    conn: psycopg.Connection[Any],
    encoder: Encoder | None,
    context_weight: float,
    dim: int,
    *,
    batch_users: int = 500,
    progress: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] = lambda: False,
) -> int:
    """Rebuild every user, a batch of users per transaction; returns interactions counted.

    ``progress(done, total)`` is called after each batch of users.  A batch
    that fails for another reason than a concurrent fold is rebuilt one user
    at a time, and a user who still fails keeps their state (logged): one
    user never stops the rebuild of the others.
    """
    counted = 0
    users = all_users(conn)
    half_life, short_half_life, _ = half_lives(conn)

    def kept(user: int, exc: Exception) -> None:
        log.error("user %s not rebuilt, kept as it was: %s", user, exc)

    said = _RebuildLog("rebuild", len(users))
    done = 0
    for lo in range(0, len(users), batch_users):
        if should_stop():
            break
        batch = users[lo : lo + batch_users]
        counted += _batch_then_each(
            batch, lambda some: _rebuild_retrying(conn, encoder, context_weight, dim, some)[1], kept
        )[0]
        done = min(lo + batch_users, len(users))
        said.advanced(done)
        if progress is not None:
            progress(done, len(users))
    said.finished(done, counted)
    # Users rebuilt before a change of half-life mid-way keep the old one: the
    # worker sees the difference (half_lives) and rebuilds them all again.
    conn.execute(Q["mark_rebuild"], {"half_life": half_life, "short_half_life": short_half_life})
    conn.execute(Q["refresh_centers"])
    return counted


def _rebuild_retrying(
    conn: psycopg.Connection[Any],
    encoder: Encoder | None,
    context_weight: float,
    dim: int,
    users: Sequence[int],
) -> tuple[int, int]:
    """_rebuild, again while a concurrent fold of the same users conflicts with it
    (10 times), or while a training holds the fold lock (as long as it does)."""
    attempt = 0
    while attempt < 10:
        try:
            return _rebuild(conn, encoder, context_weight, dim, users)
        except FoldLockBusy:
            time.sleep(0.2)
        except (psycopg.errors.SerializationFailure, psycopg.errors.DeadlockDetected):
            attempt += 1
            time.sleep(0.05 * attempt)  # a fold touched these users: again
    raise RuntimeError(f"rebuild of users {users[0]}..{users[-1]} kept conflicting")


def _batch_then_each(
    users: Sequence[int],
    rebuild: Callable[[Sequence[int]], int],
    failed: Callable[[int, Exception], None],
) -> tuple[int, int]:
    """``rebuild(users)``; if that fails (not the connection), ``rebuild([user])`` for each,
    and ``failed(user, error)`` for the ones that fail alone: one user never stops the
    others.  Returns (interactions counted, users that failed)."""
    try:
        return rebuild(users), 0
    except Exception as exc:
        if db.lost_connection(exc):
            raise
        log.warning("rebuilding users %s..%s failed (%s); one at a time", users[0], users[-1], exc)
    counted = errors = 0
    for user in users:
        try:
            counted += rebuild([user])
        except Exception as exc:
            if db.lost_connection(exc):
                raise
            failed(user, exc)
            errors += 1
    return counted, errors


def rebuild_all_in_transaction(
    conn: psycopg.Connection[Any],
    encoder: Encoder | None,
    context_weight: float,
    dim: int,
    *,
    batch_users: int = 500,
    why: str = "rebuild",
) -> int:
    """Rebuild every user inside the caller's transaction; returns interactions counted.

    For a training's switch to a new collaborative space: the caller holds
    the exclusive fold lock (no fold runs meanwhile) and commits the new item
    vectors with the users' new vectors at once, so that a reader sees the
    old space or the new one, never a mix.  A user whose rebuild fails loses
    their collaborative vector (text only until a later rebuild) rather than
    keeping one of the old space; logged.
    """
    counted = 0
    users = all_users(conn)
    clock = begin_batch(conn, context_weight)  # the caller holds the lock exclusively: this reads the clock

    def in_savepoint(some: Sequence[int]) -> int:
        with conn.transaction():
            return _rebuild_in_transaction(conn, encoder, dim, some, clock)[1]

    def drop_collab(user: int, exc: Exception) -> None:
        log.error("user %s not rebuilt; collaborative vector dropped: %s", user, exc)
        conn.execute(Q["drop_collab_of_user"], {"user": user})

    said = _RebuildLog(why, len(users))
    for lo in range(0, len(users), batch_users):
        counted += _batch_then_each(users[lo : lo + batch_users], in_savepoint, drop_collab)[0]
        said.advanced(min(lo + batch_users, len(users)))
    said.finished(len(users), counted)
    p = clock.params
    conn.execute(
        Q["mark_rebuild"],
        {
            "half_life": _interval(p.half_life_seconds),
            "short_half_life": _interval(p.short_half_life_seconds),
        },
    )
    return counted


def half_lives(conn: psycopg.Connection[Any]) -> tuple[timedelta | None, timedelta, bool]:
    """(settings.half_life, settings.short_half_life, whether every state was rebuilt with them)."""
    row = conn.execute(Q["half_lives"]).fetchone()
    assert row is not None
    return row[0], row[1], bool(row[2])


def rebuild_if_half_lives_changed(
    conn: psycopg.Connection[Any], encoder: Encoder | None, context_weight: float, dim: int
) -> int | None:
    """Rebuild every user if settings' half-lives differ from those of the last full rebuild.

    None when they do not; else the interactions counted.  One transaction,
    under the exclusive fold lock, like a training's switch: readers see every
    user with the old half-lives or every user with the new ones.
    """
    if half_lives(conn)[2]:
        return None
    with conn.transaction():
        conn.execute(Q["exclusive_fold_lock"])
        if half_lives(conn)[2]:
            return None  # another worker did it while this one waited
        counted = rebuild_all_in_transaction(conn, encoder, context_weight, dim, why="half-lives changed")
        conn.execute(Q["refresh_centers"])
    return counted


def _interval(seconds: float | None) -> timedelta | None:
    return None if seconds is None else timedelta(seconds=seconds)


def rebuild_changed_users(
    conn: psycopg.Connection[Any], encoder: Encoder | None, context_weight: float, dim: int
) -> tuple[int, int]:
    """Rebuild one batch of the users whose interactions were deleted or changed.

    Returns (users rebuilt, interactions counted); (0, 0) when none is due.
    A batch that fails is rebuilt one user at a time; a user who still fails
    is tried again later (backoff, the error in the queue), holding up nobody.
    """
    users = [r[0] for r in conn.execute(Q["users_to_rebuild"], {"limit": 500}).fetchall()]
    if not users:
        return 0, 0

    def postpone(user: int, exc: Exception) -> None:
        attempts = conn.execute(Q["rebuild_attempts"], {"user": user}).fetchone()
        delay = retry_delay((attempts[0] if attempts else 0) + 1)
        error = f"{type(exc).__name__}: {exc}"
        conn.execute(Q["postpone_rebuild"], {"user": user, "error": error, "delay": delay})
        log.warning("user %s not rebuilt (%s); again in %.0f s", user, exc, delay)

    counted, failed = _batch_then_each(
        users, lambda some: _rebuild_retrying(conn, encoder, context_weight, dim, some)[1], postpone
    )
    return len(users) - failed, counted


def all_users(conn: psycopg.Connection[Any]) -> list[int]:
    """Every user with an interaction or a state, in id order."""
    return [r[0] for r in conn.execute(Q["all_users"]).fetchall()]
