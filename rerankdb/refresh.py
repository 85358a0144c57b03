"""User vector refresh, and the drain loop: the worker's work, one batch at a time.

User vectors.  A user's vector is the direction of

    S = sum_i  w_i * 2^(-(ref - t_i) / half_life) * (v_item_i + c * v_context_i)

over the interactions i the user has, where w_i is the interaction's weight
(or its kind's), t_i its time, ref the newest t_i, v unit vectors and c the
context weight.  ``user_state`` keeps S and ref, so one more interaction
costs O(1): rescale S by the decay from the old ref to the new one and add its
term (:func:`fold`).  Decaying to any later instant only scales S, so the
direction, the user vector, is the same.  A full rebuild recomputes S from the
log with the same function.

Exactly once.  Interactions are claimed from ``interaction_queue`` with FOR
UPDATE SKIP LOCKED and the queue rows are deleted in the same transaction
that writes the state and vectors they account for: a crash rolls all of it
back, a second worker skips claimed rows, and user_state rows are locked in
user_id order so two workers never fold into the same user at once.

Items are refreshed by item_refresh.py; :func:`drain` runs both.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import psycopg

from rerankdb.encoder import Encoder
from rerankdb.item_refresh import refresh_items

log = logging.getLogger(__name__)

EPS = 1e-9  # |S| at or below this has no direction: the user has no vector


@dataclass(frozen=True)
class FoldParams:
    half_life_seconds: float | None  # None: no decay
    context_weight: float

    @classmethod
    def from_days(cls, half_life_days: float | None, context_weight: float) -> FoldParams:
        return cls(None if half_life_days is None else half_life_days * 86400.0, context_weight)

    def decay(self, age_seconds: np.ndarray) -> np.ndarray:
        if self.half_life_seconds is None:
            return np.ones_like(age_seconds)
        return np.exp2(-age_seconds / self.half_life_seconds)


# --- the arithmetic (pure) ----------------------------------------------------


def fold(
    sums: np.ndarray,
    refs: np.ndarray,
    user_idx: np.ndarray,
    times: np.ndarray,
    weights: np.ndarray,
    vectors: np.ndarray,
    params: FoldParams,
) -> tuple[np.ndarray, np.ndarray]:
    """Fold interactions into users' states.

    sums (U, D) and refs (U,) are the states (ref -inf for an empty state);
    row k of times/weights/vectors belongs to user ``user_idx[k]``.  Returns
    the new (sums, refs); the inputs are not modified.
    """
    new_refs = refs.copy()
    np.maximum.at(new_refs, user_idx, times)
    old = np.isfinite(refs)
    scale = np.zeros_like(refs)
    scale[old] = params.decay(new_refs[old] - refs[old])
    out = sums * scale[:, None]
    coef = weights * params.decay(new_refs[user_idx] - times)
    # Sum the terms per user: sort by user, then one reduceat (np.add.at is far slower).
    order = np.argsort(user_idx, kind="stable")
    grouped = user_idx[order]
    starts = np.flatnonzero(np.r_[True, grouped[1:] != grouped[:-1]])
    out[grouped[starts]] += np.add.reduceat(coef[order, None] * vectors[order], starts, axis=0)
    return out, new_refs


def interaction_vectors(
    item_vecs: np.ndarray, contexts: Sequence[str | None], encoder: Encoder | None, params: FoldParams
) -> np.ndarray:
    """v_item + c * v_context per interaction (context ignored without an encoder)."""
    vecs = item_vecs.astype(np.float64)
    with_ctx = [i for i, c in enumerate(contexts) if c and c.strip()]
    if with_ctx and encoder is not None and params.context_weight > 0:
        texts = [contexts[i] for i in with_ctx]
        uniq = sorted(set(texts))  # type: ignore[type-var]
        enc = dict(zip(uniq, encoder.encode(uniq), strict=True))  # type: ignore[arg-type]
        vecs[with_ctx] += params.context_weight * np.stack([enc[t] for t in texts]).astype(np.float64)
    return vecs


# --- user state in the database --------------------------------------------------


def _lock_states(
    conn: psycopg.Connection[Any], users: np.ndarray, dim: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Lock (creating empty ones first) the states of sorted ``users``; return sums, refs, counts."""
    # An empty placeholder first: a concurrent worker creating the same user
    # makes this wait for its commit, so the state read below is never stale.
    conn.execute(
        "insert into rerankdb.user_state (user_id, weighted_sum, ref_time)"
        " select u, array_fill(0, array[%s])::vector, '-infinity' from unnest(%s::bigint[]) as u order by u"
        " on conflict (user_id) do nothing",
        [dim, users.tolist()],
    )
    rows = conn.execute(
        "select user_id, weighted_sum, extract(epoch from ref_time)::float8, interactions"
        " from rerankdb.user_state where user_id = any(%s::bigint[]) order by user_id for update",
        [users.tolist()],
        binary=True,
    ).fetchall()
    pos = {u: k for k, u in enumerate(users.tolist())}
    sums = np.zeros((len(users), dim))
    refs = np.full(len(users), -np.inf)
    counts = np.zeros(len(users), dtype=np.int64)
    for uid, vec, ref, n in rows:
        k = pos[uid]
        sums[k] = vec.to_numpy()
        refs[k] = ref
        counts[k] = n
    return sums, refs, counts


def _write_states(
    conn: psycopg.Connection[Any], users: np.ndarray, sums: np.ndarray, refs: np.ndarray, counts: np.ndarray
) -> None:
    """Store states and user vectors (deleting the vector of a user with no direction)."""
    # Created by the first batch of a session (and again if that batch rolled back).
    conn.execute(
        "create temp table if not exists _user_state"
        " (user_id bigint, weighted_sum vector, ref float8, interactions bigint) on commit delete rows"
    )
    sums32 = sums.astype(np.float32)
    with conn.cursor().copy("copy _user_state from stdin with (format binary)") as cp:
        cp.set_types(["int8", "vector", "float8", "int8"])
        for k, uid in enumerate(users.tolist()):
            ref = float(refs[k]) if np.isfinite(refs[k]) else None
            cp.write_row((uid, sums32[k], ref, int(counts[k])))
    with conn.pipeline():
        conn.execute(
            "update rerankdb.user_state u set weighted_sum = s.weighted_sum,"
            " ref_time = coalesce(to_timestamp(s.ref), '-infinity'), interactions = s.interactions,"
            " updated_at = now() from _user_state s where u.user_id = s.user_id"
        )
        # The vector table's trigger normalizes; a sum with no direction has no vector.
        conn.execute(
            "insert into rerankdb.user_vectors (user_id, embedding)"
            " select user_id, weighted_sum from _user_state where vector_norm(weighted_sum) > %s"
            " order by user_id"
            " on conflict (user_id) do update set embedding = excluded.embedding, updated_at = now()",
            [EPS],
        )
        conn.execute(
            "delete from rerankdb.user_vectors v using _user_state s"
            " where v.user_id = s.user_id and vector_norm(s.weighted_sum) <= %s",
            [EPS],
        )


@dataclass(frozen=True)
class UserBatch:
    folded: int
    deferred: int
    users: int


CLAIM_INTERACTIONS = """
select q.interaction_id, i.user_id, coalesce(i.weight, k.weight)::float8, i.context,
       extract(epoch from i.occurred_at)::float8, q.item_id
from rerankdb.interaction_queue q
join rerankdb.interactions i on i.interaction_id = q.interaction_id
join rerankdb.interaction_kinds k on k.kind = i.kind
where not q.deferred
order by q.interaction_id
limit %s
for update of q skip locked
"""


def _item_vectors(conn: psycopg.Connection[Any], item_ids: set[int]) -> dict[int, np.ndarray]:
    """Vectors of the distinct items of a batch (each fetched once, however many interactions)."""
    rows = conn.execute(
        "select item_id, embedding from rerankdb.item_vectors where item_id = any(%s::bigint[])",
        [list(item_ids)],
        binary=True,
    ).fetchall()
    return {i: np.asarray(v.to_numpy()) for i, v in rows}


# Test hook: a callable run just before a batch commits (fault injection).
before_commit: Callable[[], None] | None = None


def refresh_users(
    conn: psycopg.Connection[Any], encoder: Encoder | None, params: FoldParams, dim: int, limit: int = 20_000
) -> UserBatch:
    """Fold one batch of queued interactions into user states and vectors."""
    with conn.transaction():
        rows = conn.execute(CLAIM_INTERACTIONS, [limit], binary=True).fetchall()
        if not rows:
            return UserBatch(0, 0, 0)
        item_vecs = _item_vectors(conn, {r[5] for r in rows})
        ready = [r for r in rows if r[5] in item_vecs]
        waiting = [r[0] for r in rows if r[5] not in item_vecs]
        if waiting:  # the item has no vector yet: keep the interaction for later
            conn.execute(
                "update rerankdb.interaction_queue set deferred = true where interaction_id = any(%s)",
                [waiting],
            )
        n_users = 0
        if ready:
            user_ids = np.array([r[1] for r in ready], dtype=np.int64)
            users, user_idx = np.unique(user_ids, return_inverse=True)
            sums, refs, counts = _lock_states(conn, users, dim)
            stacked = np.stack([item_vecs[r[5]] for r in ready])
            vecs = interaction_vectors(stacked, [r[3] for r in ready], encoder, params)
            times = np.array([r[4] for r in ready])
            weights = np.array([r[2] for r in ready])
            sums, refs = fold(sums, refs, user_idx, times, weights, vecs, params)
            counts += np.bincount(user_idx, minlength=len(users))
            _write_states(conn, users, sums, refs, counts)
            conn.execute(
                "delete from rerankdb.interaction_queue where interaction_id = any(%s)",
                [[r[0] for r in ready]],
            )
            conn.execute("update rerankdb.worker_state set last_user_refresh_at = now()")
            n_users = len(users)
        if before_commit is not None:
            before_commit()
    return UserBatch(len(ready), len(waiting), n_users)


def release_deferred(conn: psycopg.Connection[Any]) -> int:
    """Make due again the deferred interactions whose item now has a vector.

    The item_vectors trigger does this as vectors arrive; this sweep closes the
    race where a vector commits while its interaction is being deferred.
    """
    cur = conn.execute(
        "update rerankdb.interaction_queue q set deferred = false"
        " where q.deferred and exists (select 1 from rerankdb.item_vectors v where v.item_id = q.item_id)"
    )
    return int(cur.rowcount)


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
        conn.execute("set transaction isolation level repeatable read")
        conn.execute(
            "select q.interaction_id from rerankdb.interaction_queue q"
            " join rerankdb.interactions i on i.interaction_id = q.interaction_id"
            " where i.user_id = any(%s::bigint[]) for update of q",
            [ids],
        )
        arr = np.array(ids, dtype=np.int64)
        _lock_states(conn, arr, dim)  # the old states are replaced, but locked first
        rows = conn.execute(
            "select i.interaction_id, i.user_id, coalesce(i.weight, k.weight)::float8, i.context,"
            " extract(epoch from i.occurred_at)::float8, i.item_id"
            " from rerankdb.interactions i"
            " join rerankdb.interaction_kinds k on k.kind = i.kind"
            " where i.user_id = any(%s::bigint[])",
            [ids],
            binary=True,
        ).fetchall()
        item_vecs = _item_vectors(conn, {r[5] for r in rows})
        ready = [r for r in rows if r[5] in item_vecs]
        waiting = [r for r in rows if r[5] not in item_vecs]
        sums = np.zeros((len(arr), dim))
        refs = np.full(len(arr), -np.inf)
        counts = np.zeros(len(arr), dtype=np.int64)
        if ready:
            pos = {u: k for k, u in enumerate(ids)}
            user_idx = np.array([pos[r[1]] for r in ready])
            stacked = np.stack([item_vecs[r[5]] for r in ready])
            vecs = interaction_vectors(stacked, [r[3] for r in ready], encoder, params)
            sums, refs = fold(
                sums,
                refs,
                user_idx,
                np.array([r[4] for r in ready]),
                np.array([r[2] for r in ready]),
                vecs,
                params,
            )
            counts = np.bincount(user_idx, minlength=len(arr))
        _write_states(conn, arr, sums, refs, counts)
        if ready:
            conn.execute(
                "delete from rerankdb.interaction_queue where interaction_id = any(%s)",
                [[r[0] for r in ready]],
            )
        if waiting:
            conn.execute(
                "insert into rerankdb.interaction_queue (interaction_id, item_id, deferred)"
                " select i.interaction_id, i.item_id, true from rerankdb.interactions i"
                " where i.interaction_id = any(%s)"
                " on conflict (interaction_id) do update set deferred = true",
                [[r[0] for r in waiting]],
            )
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
    """Rebuild every user, a batch of users per transaction; returns interactions counted."""
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
    conn.execute("update rerankdb.worker_state set last_rebuild_at = now()")
    return counted


def all_users(conn: psycopg.Connection[Any]) -> list[int]:
    rows = conn.execute(
        "select user_id from rerankdb.interactions union select user_id from rerankdb.user_state order by 1"
    ).fetchall()
    return [r[0] for r in rows]


@dataclass
class DrainReport:
    items_embedded: int = 0
    items_unchanged: int = 0
    items_failed: int = 0
    interactions_folded: int = 0
    interactions_deferred: int = 0
    seconds: float = 0.0


def drain(
    conn: psycopg.Connection[Any],
    encoder: Encoder | None,
    params: FoldParams,
    dim: int,
    *,
    should_stop: Callable[[], bool] = lambda: False,
) -> DrainReport:
    """Do all due work: items first (so interactions find their vectors), then users."""
    report = DrainReport()
    t0 = time.perf_counter()
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
        u = refresh_users(conn, encoder, params, dim)
        report.interactions_folded += u.folded
        report.interactions_deferred += u.deferred
        if u.folded or u.deferred:
            log.info(
                "users: %d interactions folded into %d users, %d deferred", u.folded, u.users, u.deferred
            )
        progressed = progressed or u.folded + u.deferred > 0
        if not progressed:
            break
    report.seconds = time.perf_counter() - t0
    return report
