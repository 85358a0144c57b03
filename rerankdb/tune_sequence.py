"""The tuner's sequence space: how much of the sequence cosine rerank's score should hold.

``rerankdb tune`` searches the text and collaborative settings first
(:mod:`rerankdb.tune`).  If the installation has a sequence model, this
module trains one more, with the stored model's configuration, on the
tuner's history (the log without the held-out interactions: the held-out
items are never seen in training), computes the held-out users' sequence
vectors from their histories and the candidates' item vectors, and blends
them into the scores of the best settings found, for each weight of
``WEIGHTS``: ``(1 - s) * score + s * sequence cosine`` where the user and
the item have sequence vectors, as ``rerankdb.rerank`` does.  Weight 0 is
among them: where the sequence space does not help, the tuner turns it off.

The training is the cost (minutes on a large log); it is cached for the
process, keyed by its input, so tuning again on the same log (another
rating weighting, the write after a dry run) trains once.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import psycopg

from rerankdb import sequence, sequence_space
from rerankdb.scoring import Candidates, ndcg_from_scores

if TYPE_CHECKING:
    from rerankdb.tune import Fitted, Grid, TuneSettings

log = logging.getLogger(__name__)

WEIGHTS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 1.0)
TOP_SETTINGS = 10  # the best settings of the search, each blended with every weight


@dataclass(frozen=True)
class SequenceFit:
    """The held-out users' and their candidates' sequence vectors, from a model trained on
    the tuner's history alone."""

    users: np.ndarray  # (U, d) unit; zero rows: no vector
    has_user: np.ndarray  # (U,)
    cands: dict[str, Candidates]  # list -> the candidates' sequence vectors (zero: none)
    has_item: dict[str, np.ndarray]  # list -> (U, 100)
    row_vecs: np.ndarray  # (rows of the held-out users' history, d): each row's item's vector
    row_has: np.ndarray  # (rows,): whether the row's item has one
    report: sequence.TrainReport


_cache: dict[str, SequenceFit | None] = {}


def fit(conn: psycopg.Connection[Any], fitted: Fitted) -> SequenceFit | None:
    """Train on the tuner's history and compute the vectors; None when the installation has
    no sequence model (nothing to tune) or too few users to train one."""
    stored = sequence_space.current(conn)
    if stored is None:
        return None
    config = stored.model.config
    items, text = sequence_space.read_catalog(conn)
    rows = fitted.train_rows[fitted.train_rows["weight"] > 0]
    sequences = sequence_space.split_by_user(rows["user"], rows["item"])  # sorted by user, then time
    key = _key(sequences, items, config)
    if key not in _cache:
        log.info("tune: training a sequence model on the history without the held-out interactions")
        trained = sequence_space.fit(sequences, items, text, config)
        _cache.clear()
        _cache[key] = None if trained is None else _vectors(trained, fitted)
    return _cache[key]


def _key(sequences: Sequence[np.ndarray], items: np.ndarray, config: sequence.SequenceConfig) -> str:
    h = hashlib.sha256(repr(config).encode())
    h.update(items.tobytes())
    for s in sequences:
        h.update(np.asarray(s, dtype=np.int64).tobytes() + b"|")
    return h.hexdigest()


def _vectors(trained: sequence_space.Trained, fitted: Fitted) -> SequenceFit:
    model = trained.model
    index = {int(i): k + 1 for k, i in enumerate(trained.items.tolist())}
    h = fitted.holdout
    positive = h.weights > 0
    histories: list[list[int]] = [[] for _ in h.users]
    for u, item in zip(h.user_idx[positive].tolist(), h.items[positive].tolist(), strict=True):
        if item in index:
            histories[u].append(index[item])
    users = sequence.user_vectors(model, histories).astype(np.float64)
    has_user = np.linalg.norm(users, axis=1) > 0.5
    item_vecs = sequence.item_vectors(model).astype(np.float64)
    rows = np.zeros((len(fitted.needed), model.config.dim))
    has = np.zeros(len(fitted.needed), dtype=bool)
    for j, item in enumerate(fitted.needed.tolist()):
        if item in index:
            rows[j], has[j] = item_vecs[index[item] - 1], True
    pos = {name: np.searchsorted(fitted.needed, lst) for name, lst in h.lists.items()}
    at = np.array([index.get(int(i), 0) for i in h.items.tolist()], dtype=np.int64)
    return SequenceFit(
        users,
        has_user,
        {n: Candidates(rows, p) for n, p in pos.items()},
        {n: has[p] for n, p in pos.items()},
        np.where((at > 0)[:, None], item_vecs[np.maximum(at - 1, 0)], 0.0),
        at > 0,
        trained.report,
    )


def blend(scores: np.ndarray, seq_dots: np.ndarray, both: np.ndarray, weight: float) -> np.ndarray:
    """rerankdb.rerank's score with the sequence space: (1 - s) score + s cosine where both."""
    if weight <= 0:
        return scores
    return np.where(both, scores + weight * (seq_dots - scores), scores)


def sweep(
    fitted: Fitted,
    seq: SequenceFit,
    settings: Sequence[TuneSettings],
    trained: bool,
    weights: Sequence[float] = WEIGHTS,
) -> dict[TuneSettings, dict[str, np.ndarray]]:
    """Per-user NDCG@10 per list of each of ``settings`` (scored without the sequence space)
    blended with each weight: keyed by the settings with that sequence weight."""
    from rerankdb.tune import LISTS, _only, scores_grid, with_collab

    dots = {name: seq.cands[name].dots(seq.users) for name in LISTS}
    both = {name: seq.has_item[name] & seq.has_user[:, None] for name in LISTS}
    out: dict[TuneSettings, dict[str, np.ndarray]] = {}
    at_dim = {fitted.collab_dim: fitted}
    for s in settings:
        grid: Grid = _only(s)
        if trained and s.collab_weight > 0 and s.collab_dim not in at_dim:
            at_dim[s.collab_dim] = with_collab(fitted, s.collab_dim)  # found at another dimension
        f = at_dim.get(s.collab_dim, fitted) if trained and s.collab_weight > 0 else fitted
        for scored, scores, cold in scores_grid(f, s.half_life, s.short_half_life, grid, trained, s):
            if scored != replace(s, sequence_weight=0.0):
                continue
            for w in weights:
                out[replace(scored, sequence_weight=w)] = {
                    n: ndcg_from_scores(
                        blend(scores[n], dots[n], both[n], w), fitted.holdout.target_pos[n], cold
                    )
                    for n in LISTS
                }
    return out
