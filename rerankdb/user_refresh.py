"""User refresh: fold queued interactions into user states and vectors.

The arithmetic is :mod:`rerankdb.fold`; this module moves states between it
and the database, one batch per transaction.  Its statements are in
``sql/queries/user_refresh.sql``.

Exactly once.  Interactions are claimed from ``interaction_queue`` with FOR
UPDATE SKIP LOCKED and the queue rows are deleted in the same transaction
that writes the state and vectors they account for: a crash rolls all of it
back, a second worker skips claimed rows, and user_state rows are locked in
user_id order so two workers never fold into the same user at once.

Items are refreshed by :mod:`rerankdb.item_refresh`, under matching names;
:mod:`rerankdb.drain` runs both.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import psycopg

from rerankdb import backoff
from rerankdb.encoder import Encoder
from rerankdb.fold import EPS, FoldParams, fold, interaction_vectors, problems
from rerankdb.sqlfiles import queries

Q = queries("user_refresh")
log = logging.getLogger(__name__)
MAX_BACKOFF_SECONDS = 3600

# (text vector, collaborative vector or None) of each item of a batch
ItemVectors = dict[int, tuple[np.ndarray, np.ndarray | None]]


@dataclass
class States:
    """User states of one batch, in the text space and (once trained) the collaborative one."""

    users: np.ndarray  # sorted user ids
    sums: np.ndarray  # (U, D) text-space sums
    refs: np.ndarray  # (U,) reference times, -inf for an empty state
    counts: np.ndarray  # (U,) interactions counted
    collab: np.ndarray | None  # (U, k) collaborative sums; None: no collaborative space yet


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


def _empty_states(users: np.ndarray, dim: int, k: int | None) -> States:
    n = len(users)
    collab = None if k is None else np.zeros((n, k))
    return States(users, np.zeros((n, dim)), np.full(n, -np.inf), np.zeros(n, dtype=np.int64), collab)


def _lock_states(conn: psycopg.Connection[Any], users: np.ndarray, dim: int, k: int | None) -> States:
    """Lock (creating empty ones first) the states of sorted ``users`` and read them.

    ``k`` is the collaborative dimension of the batch's items (None if none has
    one); a stored collaborative sum of another dimension predates the last
    training and counts as empty (the rebuild after training replaces it).
    """
    ids = users.tolist()
    conn.execute(Q["create_placeholder_states"], {"dim": dim, "users": ids})
    rows = conn.execute(Q["lock_states"], {"users": ids}, binary=True).fetchall()
    if k is None:
        k = next((len(r[4].to_numpy()) for r in rows if r[4] is not None), None)
    st = _empty_states(users, dim, k)
    pos = {u: i for i, u in enumerate(ids)}
    for uid, vec, ref, n, collab in rows:
        i = pos[uid]
        st.sums[i] = vec.to_numpy()
        st.refs[i] = ref
        st.counts[i] = n
        if st.collab is not None and collab is not None:
            c = collab.to_numpy()
            if len(c) == st.collab.shape[1]:
                st.collab[i] = c
    return st


def _fold_rows(
    st: States,
    rows: Sequence[tuple[Any, ...]],
    item_vecs: ItemVectors,
    encoder: Encoder | None,
    params: FoldParams,
) -> None:
    """Fold claimed rows (interaction_id, user_id, weight, context, time, item_id) into ``st``."""
    pos = {u: i for i, u in enumerate(st.users.tolist())}
    user_idx = np.array([pos[r[1]] for r in rows])
    times = np.array([r[4] for r in rows])
    weights = np.array([r[2] for r in rows])
    text = np.stack([item_vecs[r[5]][0] for r in rows])
    vecs = interaction_vectors(text, [r[3] for r in rows], encoder, params)
    old_refs = st.refs
    st.sums, st.refs = fold(st.sums, old_refs, user_idx, times, weights, vecs, params)
    st.counts = st.counts + np.bincount(user_idx, minlength=len(st.users))
    if st.collab is not None:
        k = st.collab.shape[1]
        sel = [j for j, r in enumerate(rows) if _has_collab(item_vecs[r[5]][1], k)]
        cvecs = np.stack([item_vecs[rows[j][5]][1] for j in sel]) if sel else np.zeros((0, k))  # type: ignore[misc]
        # Same reference times as the text space, so both stay decayed alike.
        st.collab, _ = fold(
            st.collab,
            old_refs,
            user_idx[sel],
            times[sel],
            weights[sel],
            cvecs.astype(np.float64),
            params,
            new_refs=st.refs,
        )


def _has_collab(vec: np.ndarray | None, k: int) -> bool:
    return vec is not None and len(vec) == k


def _write_states(conn: psycopg.Connection[Any], st: States) -> None:
    """Store states and user vectors (no vector for a sum without direction)."""
    conn.execute(Q["create_state_stage"])
    sums32 = st.sums.astype(np.float32)
    collab32 = None if st.collab is None else st.collab.astype(np.float32)
    with conn.cursor().copy(Q["copy_state_stage"]) as cp:
        cp.set_types(["int8", "vector", "float8", "int8", "vector"])
        for i, uid in enumerate(st.users.tolist()):
            ref = float(st.refs[i]) if np.isfinite(st.refs[i]) else None
            collab = None if collab32 is None or not collab32[i].any() else collab32[i]
            cp.write_row((uid, sums32[i], ref, int(st.counts[i]), collab))
    with conn.pipeline():
        conn.execute(Q["write_states"])
        conn.execute(Q["write_user_vectors"], {"eps": EPS})
        conn.execute(Q["delete_directionless_user_vectors"], {"eps": EPS})


def _item_vectors(conn: psycopg.Connection[Any], item_ids: set[int]) -> ItemVectors:
    """(text, collab) vectors of the distinct items of a batch, each fetched once."""
    rows = conn.execute(Q["batch_item_vectors"], {"items": list(item_ids)}, binary=True).fetchall()
    return {
        i: (np.asarray(v.to_numpy()), None if c is None else np.asarray(c.to_numpy())) for i, v, c in rows
    }


def _collab_dim(item_vecs: ItemVectors) -> int | None:
    return next((len(c) for _, c in item_vecs.values() if c is not None), None)


def refresh_users(
    conn: psycopg.Connection[Any],
    encoder: Encoder | None,
    params: FoldParams,
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
    fold_args = (encoder, params, dim, before_commit)
    claimed: dict[int, int] = {}
    try:
        return _fold_claimed(conn, Q["claim_interactions"], {"limit": limit}, claimed, *fold_args)
    except psycopg.OperationalError:
        raise
    except Exception as exc:
        if not claimed:
            raise
        log.warning("a batch of %d interactions failed (%s); folding it in parts", len(claimed), exc)
        return _isolate(conn, claimed, exc, *fold_args)


def _fold_claimed(
    conn: psycopg.Connection[Any],
    claim: str,
    claim_params: dict[str, Any],
    claimed: dict[int, int],
    encoder: Encoder | None,
    params: FoldParams,
    dim: int,
    before_commit: Callable[[], None] | None,
) -> UserBatch:
    """Claim, check and fold one batch in one transaction; ``claimed`` gets {id: attempts}."""
    with conn.transaction():
        clock = _begin_batch(conn)
        rows = conn.execute(claim, claim_params, binary=True).fetchall()
        if not rows:
            return UserBatch(0, 0, 0)
        claimed.update((r[0], r[6]) for r in rows)
        rows, bad = _without_problems(rows, clock)
        if bad:
            _set_aside(conn, [(r[0], r[6], error) for r, error in bad])
        item_vecs = _item_vectors(conn, {r[5] for r in rows})
        ready = [r for r in rows if r[5] in item_vecs]
        waiting = [r[0] for r in rows if r[5] not in item_vecs]
        if waiting:  # the item has no vector yet: keep the interaction for later
            conn.execute(Q["defer_interactions"], {"ids": waiting})
        n_users = 0
        if ready:
            users = np.unique(np.array([r[1] for r in ready], dtype=np.int64))
            st = _lock_states(conn, users, dim, _collab_dim(item_vecs))
            _fold_rows(st, ready, item_vecs, encoder, params)
            _write_states(conn, st)
            conn.execute(Q["dequeue_interactions"], {"ids": [r[0] for r in ready]})
            conn.execute(Q["mark_user_refresh"])
            n_users = len(users)
        if before_commit is not None:
            before_commit()
    return UserBatch(len(ready), len(waiting), n_users, len(bad))


def _isolate(
    conn: psycopg.Connection[Any],
    ids: dict[int, int],
    exc: Exception,
    encoder: Encoder | None,
    params: FoldParams,
    dim: int,
    before_commit: Callable[[], None] | None,
) -> UserBatch:
    """Fold the interactions of a failed batch in halves; set aside the ones that fail alone."""
    if len(ids) == 1:
        ((iid, attempts),) = ids.items()
        with conn.transaction():
            _set_aside(conn, [(iid, attempts, f"{type(exc).__name__}: {str(exc).strip()}")])
        return UserBatch(0, 0, 0, 1)
    order = sorted(ids)
    total = UserBatch(0, 0, 0)
    for part in (order[: len(order) // 2], order[len(order) // 2 :]):
        claimed: dict[int, int] = {}
        try:
            total += _fold_claimed(
                conn,
                Q["claim_interactions_by_id"],
                {"ids": part},
                claimed,
                encoder,
                params,
                dim,
                before_commit,
            )
        except psycopg.OperationalError:
            raise
        except Exception as part_exc:
            if claimed:
                total += _isolate(conn, claimed, part_exc, encoder, params, dim, before_commit)
    return total


def _begin_batch(conn: psycopg.Connection[Any]) -> tuple[float, float]:
    """Take the shared fold lock (a training's switch of spaces waits for this batch) and
    return the database's (now, future tolerance) in epoch seconds, for fold.problems."""
    row = conn.execute(Q["begin_batch"]).fetchone()
    assert row is not None
    return float(row[0]), float(row[1])


def _without_problems(
    rows: Sequence[tuple[Any, ...]], clock: tuple[float, float]
) -> tuple[list[tuple[Any, ...]], list[tuple[tuple[Any, ...], str]]]:
    """(rows that can be folded, [(row, what is wrong)]), by fold.problems."""
    found = problems(np.array([r[4] for r in rows]), np.array([r[2] for r in rows]), *clock)
    if not found:
        return list(rows), []
    return [r for i, r in enumerate(rows) if i not in found], [(rows[i], e) for i, e in found.items()]


def _set_aside(conn: psycopg.Connection[Any], failed: Sequence[tuple[int, int, str]]) -> None:
    """Record (interaction_id, attempts so far, error) as failed; retried after a backoff."""
    conn.execute(
        Q["set_aside"],
        {
            "ids": [f[0] for f in failed],
            "errors": [f[2] for f in failed],
            "delays": [retry_delay(f[1] + 1) for f in failed],
        },
    )
    for iid, attempts, error in failed:
        log.warning("interaction %s set aside (attempt %s): %s", iid, attempts + 1, error)


def release_deferred(conn: psycopg.Connection[Any]) -> int:
    """Make due again the deferred interactions whose item now has a vector.

    The item_vectors trigger does this as vectors arrive; this sweep closes the
    race where a vector commits while its interaction is being deferred.
    """
    return int(conn.execute(Q["release_deferred"]).rowcount)


def rebuild_users(
    conn: psycopg.Connection[Any],
    encoder: Encoder | None,
    params: FoldParams,
    dim: int,
    users: Sequence[int],
) -> int:
    """Recompute the states of ``users`` from the whole log; returns interactions counted.

    See :func:`_rebuild`; a concurrent fold makes it fail with a
    serialization error, and the caller retries.
    """
    return _rebuild(conn, encoder, params, dim, users)[1]


def _rebuild(
    conn: psycopg.Connection[Any],
    encoder: Encoder | None,
    params: FoldParams,
    dim: int,
    users: Sequence[int] | None,
    *,
    limit: int = 500,
) -> tuple[int, int]:
    """Recompute the states of ``users`` from the whole log: (users, interactions counted).

    ``users`` None: the users whose log changed (``user_rebuild_queue``, up to
    ``limit``), dequeued in the same transaction.  Runs in one REPEATABLE READ
    transaction: the queue rows it locks and the log it reads are the same
    snapshot, so nothing is counted twice (queued interactions it counts are
    dequeued) or missed (those whose item has no vector are queued as
    deferred, those that cannot be folded are set aside).  A concurrent fold
    makes it fail with a serialization error; the caller retries.
    """
    with conn.transaction():
        conn.execute(Q["repeatable_read"])
        clock = _begin_batch(conn)
        if users is None:
            users = [r[0] for r in conn.execute(Q["claim_users_to_rebuild"], {"limit": limit}).fetchall()]
            if not users:
                return 0, 0
        return _rebuild_in_transaction(conn, encoder, params, dim, users, clock)


def _rebuild_in_transaction(
    conn: psycopg.Connection[Any],
    encoder: Encoder | None,
    params: FoldParams,
    dim: int,
    users: Sequence[int],
    clock: tuple[float, float],
) -> tuple[int, int]:
    """The body of :func:`_rebuild`, in the caller's transaction; ``clock`` from _begin_batch."""
    ids = sorted(set(users))
    conn.execute(Q["lock_queued_interactions_of_users"], {"users": ids})
    rows = conn.execute(Q["interactions_of_users"], {"users": ids}, binary=True).fetchall()
    rows, bad = _without_problems(rows, clock) if rows else ([], [])
    item_vecs = _item_vectors(conn, {r[5] for r in rows})
    k = _collab_dim(item_vecs)
    arr = np.array(ids, dtype=np.int64)
    _lock_states(conn, arr, dim, k)  # the old states are replaced, but locked first
    ready = [r for r in rows if r[5] in item_vecs]
    waiting = [r for r in rows if r[5] not in item_vecs]
    st = _empty_states(arr, dim, k)
    if ready:
        _fold_rows(st, ready, item_vecs, encoder, params)
    _write_states(conn, st)
    if ready:
        conn.execute(Q["dequeue_interactions"], {"ids": [r[0] for r in ready]})
    if waiting:
        conn.execute(Q["requeue_deferred"], {"ids": [r[0] for r in waiting]})
    if bad:
        conn.execute(Q["set_aside_unqueued"], {"ids": [r[0] for r, _ in bad], "errors": [e for _, e in bad]})
    conn.execute(Q["dequeue_users_to_rebuild"], {"users": ids})
    return len(ids), len(ready)


def rebuild_all(
    conn: psycopg.Connection[Any],
    encoder: Encoder | None,
    params: FoldParams,
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
    for lo in range(0, len(users), batch_users):
        if should_stop():
            break
        batch = users[lo : lo + batch_users]
        try:
            counted += _rebuild_retrying(conn, encoder, params, dim, batch)[1]
        except psycopg.OperationalError:
            raise
        except Exception as exc:
            log.warning("rebuilding users %s..%s failed (%s); one at a time", batch[0], batch[-1], exc)
            for user in batch:
                try:
                    counted += _rebuild_retrying(conn, encoder, params, dim, [user])[1]
                except psycopg.OperationalError:
                    raise
                except Exception as user_exc:
                    log.error("user %s not rebuilt, kept as it was: %s", user, user_exc)
        if progress is not None:
            progress(min(lo + batch_users, len(users)), len(users))
    conn.execute(Q["mark_rebuild"])
    conn.execute(Q["refresh_centers"])
    return counted


def _rebuild_retrying(
    conn: psycopg.Connection[Any],
    encoder: Encoder | None,
    params: FoldParams,
    dim: int,
    users: Sequence[int] | None,
) -> tuple[int, int]:
    """_rebuild, again while a concurrent fold of the same users conflicts with it."""
    for attempt in range(10):
        try:
            return _rebuild(conn, encoder, params, dim, users)
        except (psycopg.errors.SerializationFailure, psycopg.errors.DeadlockDetected):
            time.sleep(0.05 * (attempt + 1))  # a fold touched these users: again
    what = "changed users" if users is None else f"users {users[0]}..{users[-1]}"
    raise RuntimeError(f"rebuild of {what} kept conflicting")


def rebuild_all_in_transaction(
    conn: psycopg.Connection[Any],
    encoder: Encoder | None,
    params: FoldParams,
    dim: int,
    *,
    batch_users: int = 500,
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
    clock = _begin_batch(conn)  # the caller holds the lock exclusively: this only reads the clock
    for lo in range(0, len(users), batch_users):
        batch = users[lo : lo + batch_users]
        try:
            with conn.transaction():  # a savepoint
                counted += _rebuild_in_transaction(conn, encoder, params, dim, batch, clock)[1]
        except psycopg.OperationalError:
            raise
        except Exception as exc:
            log.warning("rebuilding users %s..%s failed (%s); one at a time", batch[0], batch[-1], exc)
            for user in batch:
                try:
                    with conn.transaction():
                        counted += _rebuild_in_transaction(conn, encoder, params, dim, [user], clock)[1]
                except psycopg.OperationalError:
                    raise
                except Exception as user_exc:
                    log.error("user %s not rebuilt; collaborative vector dropped: %s", user, user_exc)
                    conn.execute(Q["drop_collab_of_user"], {"user": user})
    return counted


def rebuild_changed_users(
    conn: psycopg.Connection[Any], encoder: Encoder | None, params: FoldParams, dim: int
) -> tuple[int, int]:
    """Rebuild one batch of the users whose interactions were deleted or changed.

    Returns (users rebuilt, interactions counted); (0, 0) when none is queued.
    """
    return _rebuild_retrying(conn, encoder, params, dim, None)


def all_users(conn: psycopg.Connection[Any]) -> list[int]:
    """Every user with an interaction or a state, in id order."""
    return [r[0] for r in conn.execute(Q["all_users"]).fetchall()]
