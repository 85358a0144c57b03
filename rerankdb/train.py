"""Collaborative item vectors, learned from the interaction log (``rerankdb train``).

A truncated SVD of the binary user x item matrix of positive interactions
(weight > 0): item vectors are the rows of V * sqrt(sigma), scaled to unit
length, stored in ``rerankdb.item_rank`` beside a copy of the text vector.  Users then get the same O(1)
decayed sum in this space as in the text space, so reranking blends a text
cosine and a collaborative cosine read from the same row.

Chosen by measurement on the MovieLens evaluation (rerankdb/eval/README.md): with k = 64
(the default) and centered scoring the hybrid beats EASE on both lists
(0.415 / 0.271 against 0.404 / 0.191 NDCG@10), trains in about a second on
ml-latest-small, and scales as a sparse matrix does: memory O(nnz + (users +
items) * k) and ARPACK iterations of sparse products, with no items x items
matrix.  Items nobody has interacted with get no collaborative vector and rank
by their text; new items get theirs at the next training.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import psycopg
import scipy.sparse as sp
from scipy.sparse.linalg import svds

from rerankdb import sequence_space
from rerankdb.encoder import Encoder
from rerankdb.sequence import SequenceConfig
from rerankdb.sqlfiles import queries
from rerankdb.user_refresh import rebuild_all_in_transaction

Q = queries("train")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainReport:
    users: int
    items: int
    interactions: int
    dim: int  # 0: not enough data to train
    seconds: float
    sequence_seconds: float = 0.0  # of which the sequence model's training
    sequence_epochs: int = 0  # 0: no sequence model trained


def binary_matrix(user_idx: np.ndarray, item_idx: np.ndarray, n_users: int, n_items: int) -> sp.csr_matrix:
    x = sp.csr_matrix((np.ones(len(user_idx)), (user_idx, item_idx)), shape=(n_users, n_items))
    x.data[:] = 1.0  # repeated interactions count once
    return x


def item_factors(x: sp.csr_matrix, k: int) -> np.ndarray:
    """Unit item vectors (n_items, k') from a truncated SVD of the binary matrix; k' <= k,
    components by ascending singular value."""
    k = min(k, min(x.shape) - 1)
    _, sigma, vt = svds(x, k=k, random_state=0)
    # Components in ascending order of their singular value, whatever the
    # solver returns: rerankdb.collab_key indexes the last 64, the strongest.
    order = np.argsort(sigma, kind="stable")
    sigma, vt = sigma[order], vt[order]
    v = vt.T * np.sqrt(sigma)
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    unit: np.ndarray = np.divide(v, norms, out=np.zeros_like(v), where=norms > 0)
    return unit


@dataclass(frozen=True)
class Learned:
    """Collaborative item vectors learned from (user, item) pairs of positive interactions."""

    users: int
    items: np.ndarray  # (n,) item ids, sorted
    factors: np.ndarray  # (n, k') float32 unit rows (zero: no direction)
    support: np.ndarray  # (n,) users per item


def learn(users: np.ndarray, items: np.ndarray, k: int) -> Learned | None:
    """The truncated SVD of the binary user x item matrix; None with fewer than 3 users or items.
    What ``train`` stores, and what ``rerankdb tune`` learns from a held-out log."""
    user_ids, user_idx = np.unique(users, return_inverse=True)
    item_ids, item_idx = np.unique(items, return_inverse=True)
    if min(len(user_ids), len(item_ids)) < 3:
        return None
    x = binary_matrix(user_idx, item_idx, len(user_ids), len(item_ids))
    factors = item_factors(x, k).astype(np.float32)
    support = np.asarray(x.sum(axis=0)).ravel().astype(np.int64)
    return Learned(len(user_ids), item_ids, factors, support)


def train(
    conn: psycopg.Connection[Any],
    encoder: Encoder | None,
    context_weight: float,
    dim: int,
    *,
    k: int | None = None,
    sequence: bool = False,
    sequence_config: SequenceConfig | None = None,
    progress: Callable[[int, float], None] | None = None,
) -> TrainReport:
    """Learn and store collaborative item vectors and (``sequence``) the sequence model,
    then rebuild every user, all in one switch.

    The sequence model trains first, with no transaction open (minutes on a
    large log; ``progress(epoch, held-out NDCG@10)`` after each epoch).
    Without ``sequence`` (the default here; ``rerankdb train`` and the
    worker's schedule follow RERANKDB_SEQUENCE, on by default) the stored
    model stays, if any, and the users' sequence vectors are recomputed with it.
    """
    t0 = time.perf_counter()
    row = conn.execute(Q["collab_dim"]).fetchone()
    assert row is not None
    k = k or int(row[0])
    pairs = conn.execute(Q["positive_pairs"], binary=True).fetchall()
    if not pairs:
        return TrainReport(0, 0, 0, 0, time.perf_counter() - t0)
    arr = np.array(pairs, dtype=np.int64)
    learned = learn(arr[:, 0], arr[:, 1], k)
    if learned is None:
        n_users, n_items = len(np.unique(arr[:, 0])), len(np.unique(arr[:, 1]))
        return TrainReport(n_users, n_items, len(pairs), 0, time.perf_counter() - t0)
    items, factors, support = learned.items, learned.factors, learned.support
    seq = sequence_space.train(conn, sequence_config, progress) if sequence else None
    if sequence and seq is None:
        log.info(
            "sequence model not trained: fewer than %d users with two positive interactions",
            sequence_space.MIN_USERS,
        )
    # One transaction switches every item and every user to the new space (any
    # dimension): a reader sees the old space or the new one, never a mix and
    # never an error.  Folds wait meanwhile (the exclusive fold lock; their
    # interactions stay queued); readers and writers of the log do not.
    with conn.transaction():
        conn.execute(Q["exclusive_fold_lock"])
        trained = [
            (item, vec, n)
            for item, vec, n in zip(items.tolist(), factors, support.tolist(), strict=True)
            if vec.any()
        ]
        rows = {
            "items": [t[0] for t in trained],
            "vectors": [t[1] for t in trained],
            "supports": [t[2] for t in trained],
        }
        conn.execute(Q["set_collab"], rows)
        conn.execute(Q["clear_untrained_collab"], rows)
        conn.execute(Q["mark_trained"])
        if seq is not None:
            version = sequence_space.store(conn, seq)  # the users follow in the rebuild
            log.info(
                "trained sequence model %d for %d items in %.1f s (%d epochs, held-out NDCG@10 %.4f)",
                version,
                seq.report.items,
                seq.report.seconds,
                seq.report.epochs,
                seq.report.held_out_ndcg,
            )
        counted = rebuild_all_in_transaction(conn, encoder, context_weight, dim, why="training")
        conn.execute(Q["refresh_centers"])  # the averages of the new space, in the same switch
    # The keys of recommend's collaborative index, after the commit: folds go on meanwhile.
    t_keys = time.perf_counter()
    conn.execute(Q["refresh_collab_keys"])
    log.info("rebuilt the collaborative HNSW index in %.1f s", time.perf_counter() - t_keys)
    t_keys = time.perf_counter()
    keys = conn.execute(Q["refresh_hybrid_keys"]).fetchone()
    log.info(
        "rebuilt the hybrid HNSW index (%d keys) in %.1f s",
        keys[0] if keys else 0,
        time.perf_counter() - t_keys,
    )
    seconds = time.perf_counter() - t0
    log.info(
        "trained %d-d collaborative vectors for %d items from %d interactions of %d users; "
        "rebuilt users from %d interactions (%.1f s)",
        factors.shape[1],
        len(items),
        len(pairs),
        learned.users,
        counted,
        seconds,
    )
    return TrainReport(
        learned.users,
        len(items),
        len(pairs),
        int(factors.shape[1]),
        seconds,
        seq.report.seconds if seq else 0.0,
        seq.report.epochs if seq else 0,
    )
