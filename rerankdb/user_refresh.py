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

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import psycopg

from rerankdb.encoder import Encoder
from rerankdb.fold import EPS, FoldParams, fold, interaction_vectors
from rerankdb.sqlfiles import queries

Q = queries("user_refresh")

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

    ``before_commit`` runs just before the batch commits (fault injection in tests).
    """
    with conn.transaction():
        rows = conn.execute(Q["claim_interactions"], {"limit": limit}, binary=True).fetchall()
        if not rows:
            return UserBatch(0, 0, 0)
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
    return UserBatch(len(ready), len(waiting), n_users)


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

    Runs in one REPEATABLE READ transaction: the queue rows it locks and the
    log it reads are the same snapshot, so nothing is counted twice (queued
    interactions it counts are dequeued) or missed (those whose item has no
    vector are queued as deferred).  A concurrent fold makes it fail with a
    serialization error; the caller retries.
    """
    ids = sorted(set(users))
    with conn.transaction():
        conn.execute(Q["repeatable_read"])
        conn.execute(Q["lock_queued_interactions_of_users"], {"users": ids})
        rows = conn.execute(Q["interactions_of_users"], {"users": ids}, binary=True).fetchall()
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
    return len(ready)


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

    ``progress(done, total)`` is called after each batch of users.
    """
    counted = 0
    users = all_users(conn)
    for lo in range(0, len(users), batch_users):
        if should_stop():
            break
        batch = users[lo : lo + batch_users]
        for attempt in range(10):
            try:
                counted += rebuild_users(conn, encoder, params, dim, batch)
                break
            except (psycopg.errors.SerializationFailure, psycopg.errors.DeadlockDetected):
                time.sleep(0.05 * (attempt + 1))  # a fold touched these users: again
        else:
            raise RuntimeError(f"rebuild of users {batch[0]}..{batch[-1]} kept conflicting")
        if progress is not None:
            progress(min(lo + batch_users, len(users)), len(users))
    conn.execute(Q["mark_rebuild"])
    conn.execute(Q["refresh_centers"])
    return counted


def all_users(conn: psycopg.Connection[Any]) -> list[int]:
    """Every user with an interaction or a state, in id order."""
    return [r[0] for r in conn.execute(Q["all_users"]).fetchall()]
