"""The sequence space in the database: train its model on the log, store it, run it in the worker.

The model is :mod:`rerankdb.sequence`'s (pure torch).  This module reads the
log and the items' text vectors, writes the model to
``rerankdb.sequence_model`` with every item's sequence vector in
``rerankdb.item_rank.seq`` (one transaction: a reader or a worker sees the
old model with the old item vectors or the new with the new), and
recomputes users' sequence vectors in the caller's fold or rebuild
transaction from their newest folded positive interactions (exact whatever
the order interactions commit in: the vector is recomputed from the ordered
log, never updated).

What the sequence is: a user's positive interactions (effective weight > 0)
with an item that has a vector, ordered by ``occurred_at``.  Negative kinds
are not in it: the model predicts what a user takes next, and a dislike is
not a step of that path (they still count, negatively, in the text and
collaborative spaces).  An item the model never saw (added since the
training) enters a sequence with its text part alone: the model's
projection of its text vector, which is also its sequence vector.

The worker keeps the newest model in memory, loaded once per version.
Statements: ``sql/queries/sequence_space.sql``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import psycopg
import torch
from psycopg.types.json import Jsonb

from rerankdb import partitions, sequence
from rerankdb.db import BigintArray
from rerankdb.sqlfiles import queries

Q = queries("sequence_space")
log = logging.getLogger(__name__)
KEEP_MODELS = 3  # versions kept in rerankdb.sequence_model
# Users with two positive interactions or more that a training needs: from fewer, a model
# would be noise that the blend adds to every score (the demo's 3 users, say).
MIN_USERS = 50


@dataclass(frozen=True)
class Loaded:
    """A stored model, ready to run."""

    version: int
    model: sequence.SequenceModel
    index: dict[int, int]  # item id -> the model's item index (1-based)
    items: torch.Tensor  # the model's input table (sequence.input_table)


_cache: dict[tuple[Any, ...], Loaded] = {}
_cache_lock = threading.Lock()


def current(conn: psycopg.Connection[Any]) -> Loaded | None:
    """The newest stored model (cached per database and version); None: never trained."""
    row = conn.execute(Q["current_version"]).fetchone()
    if row is None:
        return None
    key = tuple(row)
    with _cache_lock:
        if key in _cache:
            return _cache[key]
    got = conn.execute(Q["model"], {"version": row[2]}).fetchone()
    assert got is not None
    items, weights = got
    text = _text_rows(conn, items)
    model = sequence.SequenceModel.from_state(bytes(weights), text)
    loaded = Loaded(
        int(row[2]), model, {int(i): k + 1 for k, i in enumerate(items)}, model.item_vectors().detach()
    )
    with _cache_lock:
        _cache.clear()  # one model per process at a time: the newest
        _cache[key] = loaded
    return loaded


def _text_rows(conn: psycopg.Connection[Any], items: Sequence[int]) -> np.ndarray | None:
    """The text vectors of the model's items, in its order (zero rows for items gone since)."""
    rows = conn.execute(Q["text_of_items"], {"items": list(items)}, binary=True).fetchall()
    if not rows:
        return None
    by_id = {i: v.to_numpy() for i, v in rows}
    dim = len(next(iter(by_id.values())))
    out = np.zeros((len(items), dim), dtype=np.float32)
    for k, item in enumerate(items):
        if item in by_id and len(by_id[item]) == dim:
            out[k] = by_id[item]
    return out


@dataclass(frozen=True)
class Trained:
    model: sequence.SequenceModel
    items: np.ndarray  # item ids, the model's order
    report: sequence.TrainReport


READ_ROWS = 100_000  # rows of the log per fetch: memory O(interactions) as int64 pairs


def read_sequences(conn: psycopg.Connection[Any]) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """(every user's positive items oldest first, as ids; the catalog's item ids; their text
    vectors).  The log is read with a server-side cursor into int64 arrays, not Python rows."""
    users: list[np.ndarray] = []
    items: list[np.ndarray] = []
    with conn.transaction(), conn.cursor(name="rerankdb_sequences", binary=True) as cur:
        cur.execute(Q["positive_sequences"])
        while rows := cur.fetchmany(READ_ROWS):
            pairs = np.array(rows, dtype=np.int64)
            users.append(pairs[:, 0])
            items.append(pairs[:, 1])
    if not users:
        return [], *read_catalog(conn)
    return split_by_user(np.concatenate(users), np.concatenate(items)), *read_catalog(conn)


def split_by_user(users: np.ndarray, items: np.ndarray) -> list[np.ndarray]:
    """Rows sorted by user (then time) -> each user's items, in order."""
    if len(users) == 0:
        return []
    return np.split(items, np.flatnonzero(np.diff(users)) + 1)


def read_catalog(conn: psycopg.Connection[Any]) -> tuple[np.ndarray, np.ndarray]:
    """(every item rerank can score, sorted; their text vectors): a model's items."""
    catalog = conn.execute(Q["catalog_text"], binary=True).fetchall()
    items = np.array([r[0] for r in catalog], dtype=np.int64)
    text = np.stack([r[1].to_numpy() for r in catalog]).astype(np.float32) if catalog else np.zeros((0, 1))
    return items, text


def fit(
    sequences: Sequence[np.ndarray],
    items: np.ndarray,
    text: np.ndarray | None,
    config: sequence.SequenceConfig,
    progress: Callable[[int, float], None] | None = None,
) -> Trained | None:
    """Train on ``sequences`` of item ids (the catalog ``items``, sorted, with their ``text``
    vectors); None when fewer than MIN_USERS users have two positive interactions.  Items
    outside the catalog are left out of the sequences."""
    seqs = [model_indices(items, s) for s in sequences]
    if sum(len(s) >= 2 for s in seqs) < MIN_USERS:
        return None
    model, report = sequence.train(seqs, len(items), config, text=text, progress=progress)
    return Trained(model, items, report)


def train(
    conn: psycopg.Connection[Any],
    config: sequence.SequenceConfig | None = None,
    progress: Callable[[int, float], None] | None = None,
) -> Trained | None:
    """Train a model on the whole log (no transaction held meanwhile); store it with
    :func:`store`, in the transaction that switches the spaces."""
    sequences, items, text = read_sequences(conn)
    return fit(sequences, items, text, config or sequence.SequenceConfig(), progress)


def model_indices(items: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """The model's indices (1-based) of ``ids`` in the sorted ``items``; ids not there dropped."""
    if len(items) == 0:
        return np.zeros(0, dtype=np.int64)
    pos = np.searchsorted(items, ids)
    found = (pos < len(items)) & (items[np.minimum(pos, len(items) - 1)] == ids)
    out: np.ndarray = (pos[found] + 1).astype(np.int64)
    return out


def store(conn: psycopg.Connection[Any], trained: Trained) -> int:
    """In the caller's transaction (which holds the exclusive fold lock): the model as the
    newest version, every item's sequence vector; returns the version.  The users follow in
    the same transaction, by their rebuild (:func:`refresh_users`)."""
    config = trained.model.config
    report = {**dataclasses.asdict(trained.report), "config": dataclasses.asdict(config)}
    version = conn.execute(Q["next_version"]).fetchone()
    assert version is not None
    row = conn.execute(
        Q["insert_model"],
        {
            "version": version[0],
            "items": trained.items.tolist(),
            "dim": config.dim,
            "max_len": config.max_len,
            "weights": trained.model.state(),
            "report": Jsonb(report),
        },
    ).fetchone()
    assert row is not None
    vectors = sequence.item_vectors(trained.model)
    written = _item_rows(trained.items.tolist(), vectors)
    conn.execute(Q["write_items"], written)
    conn.execute(Q["clear_other_items"], written)
    # Items embedded since the log was read: their text part.
    rows = conn.execute(Q["items_without_seq"], {"items": None}, binary=True).fetchall()
    if rows:
        text = np.stack([v.to_numpy() for _, v in rows]).astype(np.float32)
        _write_new_items(conn, trained.model, [int(i) for i, _ in rows], text)
    conn.execute(Q["drop_old_models"], {"keep": KEEP_MODELS})
    return int(row[0])


NO_ROWS: dict[str, Any] = {"seq_users": [], "seq_vectors": [], "seq_items": [], "seq_attention": []}


def user_rows(conn: psycopg.Connection[Any], users: Sequence[int]) -> dict[str, Any]:
    """The sequence vectors of ``users`` from their newest folded positive interactions, as
    the parameters the fold's upsert of user_vectors writes (sql/queries/user_state.sql):
    one read and one batched forward pass, in the caller's fold or rebuild transaction,
    after its rows left the queue.  No model: none (the upsert writes NULL).

    A model that cannot run (damaged weights, say) must not stop the folds: the users get
    no sequence vector (rerank scores them by the other spaces alone, never by a stale
    vector) and the error is logged; the next training replaces the model."""
    if not len(users):
        return NO_ROWS
    try:
        return _computed(conn, users) or NO_ROWS
    except psycopg.Error:
        raise  # the database's failure, not the model's: the fold's own handling
    except Exception as exc:
        # Nothing to undo: what failed ran in Python, after reads only.
        log.error("sequence vectors of %d users cleared: the sequence model cannot run (%s)", len(users), exc)
        return NO_ROWS


def _computed(conn: psycopg.Connection[Any], users: Sequence[int]) -> dict[str, Any] | None:
    """The parameters of :func:`user_rows` for ``users``: their histories read, the model run."""
    loaded = current(conn)
    if loaded is None:
        return None
    max_len = loaded.model.config.max_len
    query = Q["histories_citus"] if partitions.of(conn).citus else Q["histories"]
    rows = conn.execute(query, {"users": list(users), "max_len": max_len}).fetchall()
    unknown = sorted({i for _, h in rows if h for i in h if i not in loaded.index})
    table = loaded.items
    extra: dict[int, int] = {}
    if unknown:
        text_rows = conn.execute(Q["text_of_items"], {"items": unknown}, binary=True).fetchall()
        text = np.stack([v.to_numpy() for _, v in text_rows]).astype(np.float32)
        table = torch.cat([table, sequence.input_table(loaded.model, text)[loaded.model.n_items + 1 :]])
        extra = {int(i): loaded.model.n_items + 1 + k for k, (i, _) in enumerate(text_rows)}
        _write_new_items(conn, loaded.model, [int(i) for i, _ in text_rows], text)
    ids = [int(u) for u, _ in rows]
    histories = [[i for i in (h or []) if i in loaded.index or i in extra] for _, h in rows]
    seqs = [[loaded.index.get(i) or extra[i] for i in h] for h in histories]
    with _threads_for(len(seqs)):
        vectors, attention = sequence.user_vectors_with_attention(loaded.model, seqs, items=table)
    vecs: list[np.ndarray | None] = []
    items: list[str | None] = []
    shares: list[str | None] = []
    for hist, vec, att in zip(histories, vectors, attention, strict=True):
        ok = bool(hist) and bool(np.isfinite(vec).all()) and bool(vec.any())
        vecs.append(vec if ok else None)
        # The window read is the newest max_len, as the attention's.
        items.append(_array_literal(hist[-len(att) :]) if ok else None)
        shares.append(_array_literal(att.tolist()) if ok else None)
    return {
        "seq_users": BigintArray(np.array(ids, dtype=np.int64)),
        "seq_vectors": vecs,
        "seq_items": items,
        "seq_attention": shares,
    }


SMALL_BATCH = 64  # users: a forward pass this small runs on one thread


@contextlib.contextmanager
def _threads_for(users: int) -> Iterator[None]:
    """One torch thread for a small batch (a fold of a few users): measured faster at batch
    1 (0.89 ms against 1.26 ms on two), and no second thread left spinning on the core the
    database needs for the same fold."""
    before = torch.get_num_threads()
    if users > SMALL_BATCH or before == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _array_literal(values: Sequence[int] | Sequence[float]) -> str:
    return "{" + ",".join(repr(v) for v in values) + "}"


def refresh_new_items(conn: psycopg.Connection[Any], item_ids: Sequence[int]) -> int:
    """Give items just embedded that have no sequence vector the projection of their text
    vector by the newest model (in the caller's transaction, under the shared fold lock so a
    training's switch is never half seen).  Returns the items written; 0 without a model."""
    if not item_ids:
        return 0
    conn.execute(Q["shared_fold_lock"])
    loaded = current(conn)
    if loaded is None:
        return 0
    rows = conn.execute(Q["items_without_seq"], {"items": list(item_ids)}, binary=True).fetchall()
    rows = [r for r in rows if int(r[0]) not in loaded.index]
    if not rows:
        return 0
    text = np.stack([v.to_numpy() for _, v in rows]).astype(np.float32)
    return _write_new_items(conn, loaded.model, [int(i) for i, _ in rows], text)


def _write_new_items(
    conn: psycopg.Connection[Any], model: sequence.SequenceModel, items: list[int], text: np.ndarray
) -> int:
    """Write the projection of ``text`` as the sequence vector of ``items``."""
    written = _item_rows(items, sequence.new_item_vectors(model, text))
    conn.execute(Q["write_items"], written)
    return len(written["items"])


def _item_rows(items: list[int], vectors: np.ndarray) -> dict[str, list[Any]]:
    """The parameters of write_items: the items whose vector is finite and not zero."""
    kept = [
        (item, vec) for item, vec in zip(items, vectors, strict=True) if np.isfinite(vec).all() and vec.any()
    ]
    return {"items": [k[0] for k in kept], "vectors": [k[1] for k in kept]}
