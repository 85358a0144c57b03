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
    new_refs: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Fold interactions into users' states.

    sums (U, D) and refs (U,) are the states (ref -inf for an empty state);
    row k of times/weights/vectors belongs to user ``user_idx[k]``.  Returns
    the new (sums, refs); the inputs are not modified.  ``new_refs`` forces
    the reference times (so a second space, folding only some of the rows,
    stays decayed to the same instants as the first).
    """
    if new_refs is None:
        new_refs = refs.copy()
        np.maximum.at(new_refs, user_idx, times)
    old = np.isfinite(refs)
    scale = np.zeros_like(refs)
    scale[old] = params.decay(new_refs[old] - refs[old])
    out = sums * scale[:, None]
    if len(user_idx) == 0:
        return out, new_refs
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


@dataclass
class States:
    """User states of one batch, in the text space and (once trained) the collaborative one."""

    users: np.ndarray  # sorted user ids
    sums: np.ndarray  # (U, D) text-space sums
    refs: np.ndarray  # (U,) reference times, -inf for an empty state
    counts: np.ndarray  # (U,) interactions counted
    collab: np.ndarray | None  # (U, k) collaborative sums; None: no collaborative space yet


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
    # An empty placeholder first: a concurrent worker creating the same user
    # makes this wait for its commit, so the state read below is never stale.
    conn.execute(
        "insert into rerankdb.user_state (user_id, weighted_sum, ref_time)"
        " select u, array_fill(0, array[%s])::vector, '-infinity' from unnest(%s::bigint[]) as u order by u"
        " on conflict (user_id) do nothing",
        [dim, users.tolist()],
    )
    rows = conn.execute(
        "select user_id, weighted_sum, extract(epoch from ref_time)::float8, interactions, collab_sum"
        " from rerankdb.user_state where user_id = any(%s::bigint[]) order by user_id for update",
        [users.tolist()],
        binary=True,
    ).fetchall()
    if k is None:
        k = next((len(r[4].to_numpy()) for r in rows if r[4] is not None), None)
    st = _empty_states(users, dim, k)
    pos = {u: i for i, u in enumerate(users.tolist())}
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
    item_vecs: dict[int, tuple[np.ndarray, np.ndarray | None]],
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
    # Created by the first batch of a session (and again if that batch rolled back).
    conn.execute(
        "create temp table if not exists _user_state (user_id bigint, weighted_sum vector, ref float8,"
        " interactions bigint, collab_sum vector) on commit delete rows"
    )
    sums32 = st.sums.astype(np.float32)
    collab32 = None if st.collab is None else st.collab.astype(np.float32)
    with conn.cursor().copy("copy _user_state from stdin with (format binary)") as cp:
        cp.set_types(["int8", "vector", "float8", "int8", "vector"])
        for i, uid in enumerate(st.users.tolist()):
            ref = float(st.refs[i]) if np.isfinite(st.refs[i]) else None
            collab = None if collab32 is None or not collab32[i].any() else collab32[i]
            cp.write_row((uid, sums32[i], ref, int(st.counts[i]), collab))
    with conn.pipeline():
        conn.execute(
            "update rerankdb.user_state u set weighted_sum = s.weighted_sum,"
            " ref_time = coalesce(to_timestamp(s.ref), '-infinity'), interactions = s.interactions,"
            " collab_sum = s.collab_sum, updated_at = now() from _user_state s where u.user_id = s.user_id"
        )
        # The vector table's trigger normalizes the text vector; collab is normalized here.
        conn.execute(
            "insert into rerankdb.user_vectors (user_id, embedding, collab)"
            " select user_id, weighted_sum,"
            "  case when vector_norm(collab_sum) > %s then l2_normalize(collab_sum) end"
            " from _user_state where vector_norm(weighted_sum) > %s order by user_id"
            " on conflict (user_id) do update set embedding = excluded.embedding, collab = excluded.collab,"
            " updated_at = now()",
            [EPS, EPS],
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


def _item_vectors(
    conn: psycopg.Connection[Any], item_ids: set[int]
) -> dict[int, tuple[np.ndarray, np.ndarray | None]]:
    """(text, collab) vectors of the distinct items of a batch, each fetched once."""
    rows = conn.execute(
        "select item_id, embedding, collab from rerankdb.item_rank where item_id = any(%s::bigint[])",
        [list(item_ids)],
        binary=True,
    ).fetchall()
    return {
        i: (np.asarray(v.to_numpy()), None if c is None else np.asarray(c.to_numpy())) for i, v, c in rows
    }


def _collab_dim(item_vecs: dict[int, tuple[np.ndarray, np.ndarray | None]]) -> int | None:
    return next((len(c) for _, c in item_vecs.values() if c is not None), None)


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
            users = np.unique(np.array([r[1] for r in ready], dtype=np.int64))
            st = _lock_states(conn, users, dim, _collab_dim(item_vecs))
            _fold_rows(st, ready, item_vecs, encoder, params)
            _write_states(conn, st)
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
        k = _collab_dim(item_vecs)
        _lock_states(conn, arr, dim, k)  # the old states are replaced, but locked first
        ready = [r for r in rows if r[5] in item_vecs]
        waiting = [r for r in rows if r[5] not in item_vecs]
        st = _empty_states(arr, dim, k)
        if ready:
            _fold_rows(st, ready, item_vecs, encoder, params)
        _write_states(conn, st)
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
    conn.execute("select rerankdb.refresh_centers()")
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
