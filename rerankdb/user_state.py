"""User states in the database: lock them, fold rows into them, write them with their vectors.

What :mod:`rerankdb.user_refresh` (one batch of queued interactions, or a
rebuild from the log) does inside its transaction.  The arithmetic is
:mod:`rerankdb.fold`'s; the statements are in ``sql/queries/user_state.sql``.
user_state rows are locked in user_id order, behind placeholder rows for new
users, so two workers never fold into the same user at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import psycopg

from rerankdb import sequence_space
from rerankdb.encoder import Encoder
from rerankdb.fold import EPS, FoldParams, fold, interaction_vectors
from rerankdb.sqlfiles import queries

Q = queries("user_state")

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
    short: np.ndarray  # (U, D) short-term text-space sums, decayed to the same refs
    short_collab: np.ndarray | None  # (U, k) short-term collaborative sums


def empty_states(users: np.ndarray, dim: int, k: int | None) -> States:
    n = len(users)
    collab = None if k is None else np.zeros((n, k))
    return States(
        users,
        np.zeros((n, dim)),
        np.full(n, -np.inf),
        np.zeros(n, dtype=np.int64),
        collab,
        np.zeros((n, dim)),
        None if collab is None else collab.copy(),
    )


def snapshot_states(conn: psycopg.Connection[Any], users: np.ndarray, dim: int, k: int | None) -> States:
    """The states a rebuild of sorted ``users`` starts from: empty, but for the users
    with a snapshot (their compacted history, revision 0009), whose sums it is.

    A snapshot's collaborative sums folded before the latest training are in
    an old space: they count as empty (the compacted rows' collaborative part
    is lost; their text part is kept).  ``k``: as for :func:`lock_states`.
    """
    ids = users.tolist()
    rows = conn.execute(Q["snapshots"], {"users": ids}, binary=True).fetchall()
    if k is None:
        k = next((len(r[4].to_numpy()) for r in rows if r[4] is not None and r[7]), None)
    st = empty_states(users, dim, k)
    pos = {u: i for i, u in enumerate(ids)}
    for uid, vec, ref, n, collab, short, short_collab, current in rows:
        i = pos[uid]
        st.sums[i], st.refs[i], st.counts[i], st.short[i] = vec.to_numpy(), ref, n, short.to_numpy()
        c = collab.to_numpy() if current and collab is not None else None
        if (
            c is not None
            and st.collab is not None
            and st.short_collab is not None
            and len(c) == st.collab.shape[1]
        ):
            st.collab[i] = c
            if short_collab is not None:
                st.short_collab[i] = short_collab.to_numpy()
    return st


def write_snapshots(conn: psycopg.Connection[Any], st: States, before: Any) -> None:
    """Store ``st`` as the users' snapshots, compacted up to ``before`` (a timestamptz)."""
    conn.execute(Q["create_snapshot_stage"])
    conn.execute(Q["clear_snapshot_stage"])
    _copy_states(conn, Q["copy_snapshot_stage"], st)
    conn.execute(Q["write_snapshots"], {"before": before})


def lock_states(conn: psycopg.Connection[Any], users: np.ndarray, dim: int, k: int | None) -> States:
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
    st = empty_states(users, dim, k)
    pos = {u: i for i, u in enumerate(ids)}
    # A NULL short-term sum (folded before revision 0006) counts as empty: the
    # worker's rebuild after the upgrade fills it from the log.
    for uid, vec, ref, n, collab, short, short_collab in rows:
        i = pos[uid]
        st.sums[i] = vec.to_numpy()
        st.refs[i] = ref
        st.counts[i] = n
        if short is not None:
            st.short[i] = short.to_numpy()
        if st.collab is not None and st.short_collab is not None:
            k = st.collab.shape[1]
            if collab is not None and len(c := collab.to_numpy()) == k:
                st.collab[i] = c
                if short_collab is not None and len(sc := short_collab.to_numpy()) == k:
                    st.short_collab[i] = sc
    return st


def fold_rows(
    st: States,
    rows: Sequence[tuple[Any, ...]],
    item_vecs: ItemVectors,
    encoder: Encoder | None,
    params: FoldParams,
) -> None:
    """Fold claimed rows (interaction_id, user_id, weight, context, time, item_id) into ``st``."""
    pos = {u: i for i, u in enumerate(st.users.tolist())}
    n = len(rows)
    user_idx = np.fromiter((pos[r[1]] for r in rows), np.intp, n)
    times = np.fromiter((r[4] for r in rows), np.float64, n)
    weights = np.fromiter((r[2] for r in rows), np.float64, n)
    items: dict[int, int] = {}  # the batch's distinct items, each with its column
    columns = np.fromiter((items.setdefault(r[5], len(items)) for r in rows), np.intp, n)
    text = np.stack([item_vecs[i][0] for i in items])
    vecs, vec_columns = interaction_vectors(text, columns, [r[3] for r in rows], encoder, params)
    old_refs = st.refs
    st.sums, st.refs = fold(st.sums, old_refs, user_idx, times, weights, vecs, params, columns=vec_columns)
    # Every other sum is decayed to the same reference times as this one.
    short = params.short()
    st.short, _ = fold(
        st.short, old_refs, user_idx, times, weights, vecs, short, new_refs=st.refs, columns=vec_columns
    )
    st.counts = st.counts + np.bincount(user_idx, minlength=len(st.users))
    if st.collab is not None and st.short_collab is not None:
        k = st.collab.shape[1]
        with_collab = [i for i in items if _has_collab(item_vecs[i][1], k)]
        cpos = {item: j for j, item in enumerate(with_collab)}
        sel = [j for j, r in enumerate(rows) if r[5] in cpos]
        ccols = np.fromiter((cpos[rows[j][5]] for j in sel), np.intp, len(sel))
        cvecs = np.stack([item_vecs[i][1] for i in with_collab]) if with_collab else np.zeros((0, k))  # type: ignore[misc]
        args = (user_idx[sel], times[sel], weights[sel], cvecs.astype(np.float64))
        st.collab, _ = fold(st.collab, old_refs, *args, params, new_refs=st.refs, columns=ccols)
        st.short_collab, _ = fold(st.short_collab, old_refs, *args, short, new_refs=st.refs, columns=ccols)


def _has_collab(vec: np.ndarray | None, k: int) -> bool:
    return vec is not None and len(vec) == k


def write_states(conn: psycopg.Connection[Any], st: States, seq: dict[str, Any] | None = None) -> None:
    """Store states and user vectors (no vector for a sum without direction); ``seq``: the
    users' sequence vectors (:func:`rerankdb.sequence_space.user_rows`; None: none)."""
    conn.execute(Q["create_state_stage"])
    _copy_states(conn, Q["copy_state_stage"], st)
    with conn.pipeline():
        conn.execute(Q["write_states"])
        conn.execute(Q["write_user_vectors"], {"eps": EPS, **(seq or sequence_space.NO_ROWS)})
        conn.execute(Q["delete_directionless_user_vectors"], {"eps": EPS})
        # Emptied once written, in the same round trip: the next batch of this
        # transaction (a training's rebuild) must write its own users alone.
        conn.execute(Q["clear_state_stage"])


def _copy_states(conn: psycopg.Connection[Any], copy: str, st: States) -> None:
    """COPY ``st`` into a stage of user_state's shape (float32, no collab without direction)."""
    sums32, short32 = st.sums.astype(np.float32), st.short.astype(np.float32)
    collab32 = None if st.collab is None else st.collab.astype(np.float32)
    short_collab32 = None if st.short_collab is None else st.short_collab.astype(np.float32)
    with conn.cursor().copy(copy) as cp:
        cp.set_types(["int8", "vector", "float8", "int8", "vector", "vector", "vector"])
        for i, uid in enumerate(st.users.tolist()):
            ref = float(st.refs[i]) if np.isfinite(st.refs[i]) else None
            collab = short_collab = None
            if collab32 is not None and short_collab32 is not None and collab32[i].any():
                collab, short_collab = collab32[i], short_collab32[i]
            cp.write_row((uid, sums32[i], ref, int(st.counts[i]), collab, short32[i], short_collab))


def item_vectors(conn: psycopg.Connection[Any], item_ids: set[int]) -> ItemVectors:
    """(text, collab) vectors of the distinct items of a batch, each fetched once."""
    rows = conn.execute(Q["batch_item_vectors"], {"items": list(item_ids)}, binary=True).fetchall()
    return {
        i: (np.asarray(v.to_numpy()), None if c is None else np.asarray(c.to_numpy())) for i, v, c in rows
    }


def collab_dim(item_vecs: ItemVectors) -> int | None:
    return next((len(c) for _, c in item_vecs.values() if c is not None), None)
