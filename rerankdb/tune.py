"""``rerankdb tune``: choose the settings on the installation's own log.

Each sampled user's newest interaction (if positive) is held out; the rest of
the log is the history.  From the history alone the tuner learns
collaborative vectors as ``rerankdb train`` does and folds every user's
long- and short-term sums as the worker does (:func:`rerankdb.fold.fold`, the
same function), for each pair of half-lives in the grid.  Each held-out
interaction gets two candidate lists from the installation's catalog: the
target and 99 items the user never touched, drawn uniformly (``uniform``) or
in proportion to their popularity in the history (``popular``).  Every
setting of the grid ranks them as ``rerankdb.rerank`` would (the same
formula; ``tests/test_tune.py`` checks the two agree), and the best NDCG@10
on the chosen objective (``uniform``, ``popular`` or their ``mean``) wins.

It reads nothing but the database.  Writing the choice (not with
``dry_run``) takes the exclusive fold lock, as a training does; if a
half-life changed and the caller can rebuild (``rebuild=True``: it has the
worker's encoder, or the log has no context text), every user is rebuilt in
the same transaction, so readers see the old settings or the new ones.
Otherwise the worker rebuilds at its next drain.

Cost: one fold of the sampled users' histories per half-life (each sum is
cached), candidate dot products per blend of a space, and per setting a few
array operations on users x 100 scores; memory O(sampled users x 100) per
score array plus the vectors of the items involved (candidate vectors are
gathered a chunk of users at a time).  Users are sampled (``max_users``), so
the cost grows with the log only through the SVD and the read of the log.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import psycopg
from psycopg.types.json import Jsonb

from rerankdb import metrics, tune_sequence
from rerankdb.encoder import Encoder
from rerankdb.errors import InvalidInputError, PermissionDeniedError
from rerankdb.fold import FoldParams, fold
from rerankdb.holdout import Holdout, hold_out, read_catalog, read_log
from rerankdb.scoring import Candidates, Space, center, ndcg_from_scores, space, unit
from rerankdb.sqlfiles import queries
from rerankdb.train import learn, train
from rerankdb.user_refresh import rebuild_all_in_transaction

Q = queries("tune")
log = logging.getLogger(__name__)

OBJECTIVES = ("mean", "uniform", "popular")
LISTS = ("uniform", "popular")
MIN_USERS = 20  # fewer held-out users than this: too few to choose anything
# rerankdb.rerank's context_items, as the tuner tries them: each held-out user's
# newest history items (those just before the held-out one) as the context.
CONTEXT_ITEMS = 3
CONTEXT_WEIGHTS = (0.0, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0)
DAY = 86400.0


@dataclass(frozen=True)
class TuneSettings:
    """The settings the tuner chooses (the columns of rerankdb.settings)."""

    half_life: float | None  # seconds; None: no decay
    short_half_life: float  # seconds
    collab_weight: float
    collab_shrink: float
    text_centering: float
    collab_centering: float
    short_weight: float
    collab_short_weight: float
    collab_dim: int  # of the collaborative vectors scored (a new one means a new training)
    sequence_weight: float = 0.0  # of the sequence cosine in the score

    @property
    def half_lives(self) -> tuple[float | None, float]:
        return self.half_life, self.short_half_life

    @property
    def label(self) -> str:
        hl = "no decay" if self.half_life is None else duration(self.half_life)
        return (
            f"half-life {hl} / short {duration(self.short_half_life)}, short weight text "
            f"{self.short_weight:g} / collab {self.collab_short_weight:g}, collab weight "
            f"{self.collab_weight:g} (shrink {self.collab_shrink:g}, {self.collab_dim}-d), centering text "
            f"{self.text_centering:g} / collab {self.collab_centering:g}, sequence weight "
            f"{self.sequence_weight:g}"
        )


def duration(seconds: float) -> str:
    for name, size in (("d", DAY), ("h", 3600.0), ("min", 60.0)):
        if seconds >= size:
            return f"{seconds / size:g} {name}"
    return f"{seconds:g} s"


@dataclass(frozen=True)
class Grid:
    """What the tuner tries: every combination, pruned where a value cannot matter, at the
    trained collaborative dimension; then the same blends at each other dimension of
    ``collab_dims`` for the ``pairs_per_dim`` best pairs of half-lives (a new dimension
    means a new training, which the tuner runs when it writes)."""

    half_lives: Sequence[float | None] = (None, 30 * DAY, 365 * DAY)
    short_half_lives: Sequence[float] = (30.0, 60.0, 120.0, 600.0, 3600.0, DAY)
    short_weights: Sequence[float] = (0.0, 0.25, 0.5, 0.7, 0.85, 0.95)
    collab_short_weights: Sequence[float] = (0.0, 0.25, 0.5, 0.75, 1.0)
    collab_weights: Sequence[float] = (0.0, 0.5, 0.7, 0.85, 1.0)
    collab_shrinks: Sequence[float] = (0.0, 10.0, 30.0)
    text_centerings: Sequence[float] = (0.0, 1.0)
    collab_centerings: Sequence[float] = (0.0, 0.5, 1.0)
    collab_dims: Sequence[int] = (64, 128, 256)
    pairs_per_dim: int = 2


@dataclass(frozen=True)
class Trial:
    settings: TuneSettings
    ndcg: dict[str, float]  # list name -> NDCG@10

    def objective(self, objective: str) -> float:
        if objective == "mean":
            return (self.ndcg["uniform"] + self.ndcg["popular"]) / 2
        return self.ndcg[objective]


@dataclass(frozen=True)
class Interval:
    mean: float
    low: float
    high: float

    def __str__(self) -> str:
        return f"{self.mean:.4f} [{self.low:.4f}, {self.high:.4f}]"


@dataclass(frozen=True)
class TuneReport:
    objective: str
    users: int  # held-out users
    interactions: int  # in the log the tuner read
    trials: list[Trial]
    current: TuneSettings
    chosen: TuneSettings
    current_ndcg: dict[str, Interval]  # list -> NDCG@10 with its bootstrap interval
    chosen_ndcg: dict[str, Interval]
    written: bool
    retrained: bool  # a new collaborative dimension: trained (every user rebuilt) in the same transaction
    rebuilt: bool  # every user rebuilt with new half-lives, in the same transaction
    rebuild_pending: bool  # half-lives changed; the worker rebuilds at its next drain
    seconds: float
    trained_collab: bool  # the installation has collaborative vectors (else their settings stay)
    per_user: dict[str, dict[str, np.ndarray]] = field(default_factory=dict, repr=False)
    # settings.context_items_weight: NDCG@10 per list for each weight tried (at the chosen
    # settings, the newest CONTEXT_ITEMS history items as context), the current and chosen.
    context_ndcg: dict[float, dict[str, float]] = field(default_factory=dict)
    current_context_weight: float = 0.5
    chosen_context_weight: float = 0.5
    # settings.sequence_weight: NDCG@10 per list for each weight tried at the chosen other
    # settings (empty: the installation has no sequence model, or tune ran without it), and
    # the seconds its training on the held-out log took.
    sequence_ndcg: dict[float, dict[str, float]] = field(default_factory=dict)
    sequence_seconds: float = 0.0

    def best(self, objective: str) -> Trial:
        """The best trial for another objective (the grid does not depend on it)."""
        return max(self.trials, key=lambda t: t.objective(objective))

    def as_json(self) -> dict[str, Any]:
        return {
            "objective": self.objective,
            "users": self.users,
            "interactions": self.interactions,
            "trials": len(self.trials),
            "seconds": round(self.seconds, 1),
            "current": asdict(self.current),
            "chosen": asdict(self.chosen),
            "current_ndcg@10": {k: asdict(v) for k, v in self.current_ndcg.items()},
            "chosen_ndcg@10": {k: asdict(v) for k, v in self.chosen_ndcg.items()},
            "context_items_weight": {
                "current": self.current_context_weight,
                "chosen": self.chosen_context_weight,
                "ndcg@10": {f"{w:g}": v for w, v in self.context_ndcg.items()},
            },
            "sequence_weight": {
                "current": self.current.sequence_weight,
                "chosen": self.chosen.sequence_weight,
                "ndcg@10": {f"{w:g}": v for w, v in self.sequence_ndcg.items()},
                "training_seconds": round(self.sequence_seconds, 1),
            },
        }


# -- the search ------------------------------------------------------------------------


@dataclass
class Fitted:
    """Everything a pair of half-lives needs: candidate vectors and the users' spaces."""

    text_cands: dict[str, Candidates]  # list -> the users' candidates' text vectors
    collab_cands: dict[str, Candidates] | None  # list -> their collaborative vectors (zero: none)
    has_collab_item: dict[str, np.ndarray] | None  # list -> (U, 100)
    support: dict[str, np.ndarray] | None  # list -> (U, 100) users per item
    holdout: Holdout
    text_vecs: np.ndarray  # (R, D) item text vector of each history row
    collab_vecs: np.ndarray | None  # (R, k)
    row_has_collab: np.ndarray | None  # (R,)
    needed: np.ndarray  # the items of the histories and lists, sorted
    train_rows: np.ndarray  # the log without the held-out targets: what vectors are learned from
    collab_dim: int | None = None  # of collab_*; None: none
    cache: dict[Any, np.ndarray] = field(default_factory=dict)  # folded sums, by (space, k, half-life)


def fold_users(fitted: Fitted, half_life: float | None, short_half_life: float) -> tuple[Space, Space | None]:
    """The sampled users' text and collaborative spaces, folded as the worker folds (each
    sum is the same decayed sum with another half-life: computed once per half-life)."""
    text = space(_sums(fitted, "text", half_life), _sums(fitted, "text", short_half_life))
    if fitted.collab_vecs is None or fitted.row_has_collab is None:
        return text, None
    return text, space(_sums(fitted, "collab", half_life), _sums(fitted, "collab", short_half_life))


def _sums(fitted: Fitted, which: str, half_life: float | None) -> np.ndarray:
    """Every sampled user's sum in one space with one half-life, decayed to their newest time."""
    key = (which, fitted.collab_dim if which == "collab" else None, half_life)
    if key not in fitted.cache:
        h = fitted.holdout
        if "refs" not in fitted.cache:
            refs = np.full(len(h.users), -np.inf)
            np.maximum.at(refs, h.user_idx, h.times)
            fitted.cache["refs"] = refs
        if which == "text":
            rows = (h.user_idx, h.times, h.weights, fitted.text_vecs)
        else:
            assert fitted.collab_vecs is not None and fitted.row_has_collab is not None
            sel = fitted.row_has_collab
            rows = (h.user_idx[sel], h.times[sel], h.weights[sel], fitted.collab_vecs[sel])
        empty = np.zeros((len(h.users), rows[3].shape[1]))
        unset = np.full(len(h.users), -np.inf)
        # The refs forced to each user's newest time in the text space, as user_state does.
        fitted.cache[key], _ = fold(empty, unset, *rows, FoldParams(half_life, 0.0), fitted.cache["refs"])
    out: np.ndarray = fitted.cache[key]
    return out


def _score_grid(
    fitted: Fitted,
    half_life: float | None,
    short_half_life: float,
    grid: Grid,
    trained: bool,
    base: TuneSettings,
) -> Iterator[tuple[TuneSettings, dict[str, np.ndarray]]]:
    """(settings, per-user NDCG@10 per list) for every blend of the grid at these half-lives."""
    for settings, scores, cold in scores_grid(fitted, half_life, short_half_life, grid, trained, base):
        yield (
            settings,
            {n: ndcg_from_scores(v, fitted.holdout.target_pos[n], cold) for n, v in scores.items()},
        )


def scores_grid(
    fitted: Fitted,
    half_life: float | None,
    short_half_life: float,
    grid: Grid,
    trained: bool,
    base: TuneSettings,
) -> Iterator[tuple[TuneSettings, dict[str, np.ndarray], np.ndarray]]:
    """(settings, rerank's scores of each list's candidates (U, 100) per list, which users are
    cold) for every blend of the grid at these half-lives (the sequence weight 0)."""
    text, collab = fold_users(fitted, half_life, short_half_life)
    cold = ~text.has_long
    text_dots = {
        (name, s, c): text.query_dots(fitted.text_cands[name], s, c)
        for name in LISTS
        for s in grid.short_weights
        for c in grid.text_centerings
    }
    blends: list[tuple[float, float, float, float]] = [(0.0, 0.0, 0.0, 0.0)]
    collab_dots: dict[tuple[str, float, float], np.ndarray] = {}
    if trained and collab is not None and fitted.collab_cands is not None:
        for name in LISTS:
            for s in grid.collab_short_weights:
                for c in grid.collab_centerings:
                    collab_dots[name, s, c] = collab.query_dots(fitted.collab_cands[name], s, c)
        blends += [
            (w, shrink, s, c)
            for w in grid.collab_weights
            if w > 0
            for shrink in grid.collab_shrinks
            for s in grid.collab_short_weights
            for c in grid.collab_centerings
        ]
    else:
        blends = [(base.collab_weight, base.collab_shrink, base.collab_short_weight, base.collab_centering)]
    for s_text, c_text in itertools.product(grid.short_weights, grid.text_centerings):
        for w, shrink, s_collab, c_collab in blends:
            out = {}
            for name in LISTS:
                scores = text_dots[name, s_text, c_text]
                if collab_dots and w > 0:
                    assert collab is not None
                    scores = _hybrid(
                        fitted, name, collab, scores, collab_dots[name, s_collab, c_collab], w, shrink
                    )
                out[name] = scores
            k = fitted.collab_dim if collab_dots else base.collab_dim
            yield (
                TuneSettings(
                    half_life, short_half_life, w, shrink, c_text, c_collab, s_text, s_collab, k or 0
                ),
                out,
                cold,
            )


def _hybrid(
    fitted: Fitted,
    name: str,
    collab: Space,
    text_scores: np.ndarray,
    collab_dots: np.ndarray,
    w: float,
    shrink: float,
) -> np.ndarray:
    """rerank's score from the two spaces' dots: (1 - w_item) text + w_item collab where the
    item and the user have collaborative vectors, w_item = w * support / (support + shrink)."""
    assert fitted.has_collab_item is not None and fitted.support is not None
    sup = fitted.support[name]
    item_w = w * sup / np.maximum(sup + shrink, 1e-30) if shrink > 0 else w
    both = fitted.has_collab_item[name] & collab.has_long[:, None]
    return np.where(both, text_scores + item_w * (collab_dots - text_scores), text_scores)


def current_settings(conn: psycopg.Connection[Any]) -> tuple[TuneSettings, bool, tuple[float, float]]:
    """(the settings rerank scores with now, whether collaborative vectors are trained, the
    database's now and future tolerance in seconds).  collab_dim is the trained dimension."""
    row = conn.execute(Q["settings"]).fetchone()
    assert row is not None
    trained_dim = None if row[9] is None else int(row[9])
    w, shrink, tc, cc, sw, csw = (float(x) for x in row[2:8])
    current = TuneSettings(
        row[0], row[1], w, shrink, tc, cc, sw, csw, trained_dim or int(row[8]), float(row[12])
    )
    return current, trained_dim is not None, (float(row[10]), float(row[11]))


def fit(
    conn: psycopg.Connection[Any], *, max_users: int, seed: int
) -> tuple[Fitted, TuneSettings, bool, int]:
    """Read the database, hold out, learn collaborative vectors from the history and gather
    candidate vectors: (fitted, current settings, trained, log rows)."""
    current, trained, (now, tolerance) = current_settings(conn)
    log_rows = read_log(conn, now, tolerance)
    catalog = read_catalog(conn)
    rng = np.random.default_rng(seed)
    holdout, train_rows = hold_out(log_rows, catalog, rng, max_users)
    if len(holdout.users) < MIN_USERS:
        raise InvalidInputError(
            f"rerankdb tune needs at least {MIN_USERS} users whose newest interaction is positive and "
            f"who have an older one; the log has {len(holdout.users)}"
        )
    needed = np.unique(np.concatenate([holdout.items, *[lst.ravel() for lst in holdout.lists.values()]]))
    text = _text_vectors(conn, needed)
    text_cands = {name: Candidates(text, pos) for name, pos in _positions(holdout, needed).items()}
    rows_text = text[np.searchsorted(needed, holdout.items)]
    fitted = Fitted(text_cands, None, None, None, holdout, rows_text, None, None, needed, train_rows)
    if trained:
        fitted = with_collab(fitted, current.collab_dim)
    return fitted, current, trained, len(log_rows)


def with_collab(fitted: Fitted, k: int) -> Fitted:
    """``fitted`` with k-d collaborative vectors learned from its history, as train learns them."""
    collab = _collab_vectors(fitted.train_rows, k)
    if collab is None:
        return replace(fitted, collab_cands=None, has_collab_item=None, support=None, collab_dim=None)
    vec_of, support_of = collab
    width = next(iter(vec_of.values())).shape[0] if vec_of else 1  # k, or less for a small log
    needed, holdout = fitted.needed, fitted.holdout
    cvecs = np.zeros((len(needed), width))
    sup = np.zeros(len(needed))
    has = np.zeros(len(needed), dtype=bool)
    for j, item in enumerate(needed.tolist()):
        if item in vec_of:
            cvecs[j], sup[j], has[j] = vec_of[item], support_of[item], True
    pos = _positions(holdout, needed)
    rows_pos = np.searchsorted(needed, holdout.items)
    return replace(
        fitted,
        collab_cands={n: Candidates(cvecs, p) for n, p in pos.items()},
        has_collab_item={n: has[p] for n, p in pos.items()},
        support={n: sup[p] for n, p in pos.items()},
        collab_vecs=cvecs[rows_pos],
        row_has_collab=has[rows_pos],
        collab_dim=width,
    )


def _positions(holdout: Holdout, needed: np.ndarray) -> dict[str, np.ndarray]:
    return {name: np.searchsorted(needed, lst) for name, lst in holdout.lists.items()}


def _text_vectors(conn: psycopg.Connection[Any], items: np.ndarray) -> np.ndarray:
    rows = conn.execute(Q["text_vectors"], {"items": items.tolist()}, binary=True).fetchall()
    by_id = {i: v.to_numpy() for i, v in rows}
    return np.stack([np.asarray(by_id[i], dtype=np.float64) for i in items.tolist()])


def _collab_vectors(train_rows: np.ndarray, k: int) -> tuple[dict[int, np.ndarray], dict[int, int]] | None:
    """Collaborative vectors learned from the history alone, as rerankdb.train learns them."""
    pos = train_rows[train_rows["weight"] > 0]
    learned = learn(pos["user"], pos["item"], k)
    if learned is None:
        return None
    factors = learned.factors.astype(np.float64)
    keep = np.flatnonzero(np.abs(factors).sum(axis=1) > 0)
    return (
        {int(learned.items[j]): factors[j] for j in keep},
        {int(learned.items[j]): int(learned.support[j]) for j in keep},
    )


def search(
    fitted: Fitted,
    current: TuneSettings,
    trained: bool,
    grid: Grid,
    objective: str = "mean",
    progress: Callable[[int, int], None] | None = None,
) -> tuple[list[Trial], dict[TuneSettings, dict[str, np.ndarray]]]:
    """Every setting tried, and the current settings (whether the grid has them or not):
    (trials, per-user NDCG@10 per list of each).  ``fitted`` holds the trained dimension."""
    pairs = list(itertools.product(grid.half_lives, grid.short_half_lives))
    other_dims = [k for k in grid.collab_dims if k != current.collab_dim] if trained else []
    total = len(pairs) + 1 + len(other_dims)
    trials: list[Trial] = []
    per_user: dict[TuneSettings, dict[str, np.ndarray]] = {}

    def run(f: Fitted, hl: float | None, short: float, g: Grid) -> None:
        for settings, ndcg in _score_grid(f, hl, short, g, trained, current):
            if settings not in per_user:
                trials.append(Trial(settings, {n: float(v.mean()) for n, v in ndcg.items()}))
                per_user[settings] = ndcg

    done = 0
    for hl, short in pairs:
        run(fitted, hl, short, grid)
        done += 1
        if progress is not None:
            progress(done, total)
    run(fitted, current.half_life, current.short_half_life, _only(current))
    done += 1
    if progress is not None:
        progress(done, total)
    best_pairs: list[tuple[float | None, float]] = []
    for t in sorted(trials, key=lambda t: -t.objective(objective)):
        if t.settings.half_lives not in best_pairs:
            best_pairs.append(t.settings.half_lives)
    tried_dims = {current.collab_dim}
    for k in other_dims:
        fk = with_collab(fitted, k)
        if fk.collab_dim is not None and fk.collab_dim not in tried_dims:  # a small log caps k
            tried_dims.add(fk.collab_dim)
            for hl, short in best_pairs[: grid.pairs_per_dim]:
                run(fk, hl, short, grid)
        done += 1
        if progress is not None:
            progress(done, total)
    return trials, per_user


def score_settings(
    fitted: Fitted, settings: TuneSettings, trained: bool
) -> list[tuple[TuneSettings, dict[str, np.ndarray]]]:
    """[(settings as scored, per-user NDCG@10 per list)] of one setting."""
    want = _as_scored(settings, trained)
    scored = _score_grid(
        fitted, settings.half_life, settings.short_half_life, _only(settings), trained, settings
    )
    return [(s, ndcg) for s, ndcg in scored if s == want]


def context_sweep(
    fitted: Fitted,
    chosen: TuneSettings,
    trained: bool,
    weights: Sequence[float] = CONTEXT_WEIGHTS,
    seq: tune_sequence.SequenceFit | None = None,
) -> dict[float, dict[str, np.ndarray]]:
    """Per-user NDCG@10 per list for each context_items_weight at the ``chosen`` settings,
    each user's CONTEXT_ITEMS newest history items as context_items (rerankdb.rerank's
    formula: the context's average vector per space, centered, mixed into the query; in the
    sequence space, with ``seq``, the average of the items' sequence vectors, uncentered)."""
    if trained and fitted.collab_dim != chosen.collab_dim:
        fitted = with_collab(fitted, chosen.collab_dim)
    h = fitted.holdout
    newest = _newest_rows(h.user_idx, h.times, len(h.users))
    text, collab = fold_users(fitted, chosen.half_life, chosen.short_half_life)
    q_text = text.query(chosen.short_weight, chosen.text_centering)
    c_text, has_text = _context_vectors(newest, h.items, fitted.text_vecs, np.ones(len(h.items), dtype=bool))
    c_text = center(c_text, text.center, chosen.text_centering)
    use_collab = (
        trained and collab is not None and fitted.collab_cands is not None and chosen.collab_weight > 0
    )
    if use_collab:
        assert collab is not None and fitted.collab_vecs is not None and fitted.row_has_collab is not None
        q_collab = collab.query(chosen.collab_short_weight, chosen.collab_centering)
        c_collab, has_collab = _context_vectors(newest, h.items, fitted.collab_vecs, fitted.row_has_collab)
        c_collab = center(c_collab, collab.center, chosen.collab_centering)
    use_seq = seq is not None and chosen.sequence_weight > 0
    if use_seq:
        assert seq is not None
        c_seq, has_seq = _context_vectors(newest, h.items, seq.row_vecs, seq.row_has)
    cold = ~text.has_long
    out: dict[float, dict[str, np.ndarray]] = {}
    for c in weights:
        qt = _mix(q_text, c_text, has_text, c)
        per_list = {}
        for name in LISTS:
            scores = fitted.text_cands[name].dots(qt)
            if use_collab:
                assert fitted.collab_cands is not None and collab is not None
                collab_dots = fitted.collab_cands[name].dots(_mix(q_collab, c_collab, has_collab, c))
                scores = _hybrid(
                    fitted, name, collab, scores, collab_dots, chosen.collab_weight, chosen.collab_shrink
                )
            if use_seq:
                assert seq is not None
                # A user without a sequence vector keeps none (rerankdb.blend of NULL).
                seq_dots = seq.cands[name].dots(_mix(seq.users, c_seq, has_seq, c))
                both = seq.has_item[name] & seq.has_user[:, None]
                scores = tune_sequence.blend(scores, seq_dots, both, chosen.sequence_weight)
            per_list[name] = ndcg_from_scores(scores, h.target_pos[name], cold)
        out[c] = per_list
    return out


def _newest_rows(user_idx: np.ndarray, times: np.ndarray, n_users: int) -> list[np.ndarray]:
    """Per user, their CONTEXT_ITEMS newest history rows."""
    order = np.lexsort((-np.arange(len(times)), -times, user_idx))  # by user, newest first
    out: list[np.ndarray] = [np.empty(0, dtype=np.int64) for _ in range(n_users)]
    starts = np.searchsorted(user_idx[order], np.arange(n_users))
    ends = np.searchsorted(user_idx[order], np.arange(n_users), side="right")
    for u in range(n_users):
        out[u] = order[starts[u] : min(ends[u], starts[u] + CONTEXT_ITEMS)]
    return out


def _context_vectors(
    rows: list[np.ndarray], items: np.ndarray, vecs: np.ndarray, has: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(each user's unit average vector of their context rows' distinct items, whether
    they have one): the rows without a vector of the space do not count."""
    out = np.zeros((len(rows), vecs.shape[1]))
    for u, r in enumerate(rows):
        r = r[has[r]]
        if len(r):
            _, first = np.unique(items[r], return_index=True)  # an item counts once
            out[u] = vecs[r[first]].mean(axis=0)
    return unit(out)


def _mix(q: np.ndarray, ctx: np.ndarray, has: np.ndarray, c: float) -> np.ndarray:
    """rerankdb.blend(q, ctx, c) without centering: normalize((1 - c) q + c ctx); q where
    the user has no context or c is 0, ctx where c is 1."""
    if c <= 0:
        return q
    mixed, ok = unit((1 - c) * q + c * ctx) if c < 1 else (ctx, has)
    return np.where((has & ok)[:, None], mixed, q)


def _only(s: TuneSettings) -> Grid:
    return Grid(
        half_lives=(s.half_life,),
        short_half_lives=(s.short_half_life,),
        short_weights=(s.short_weight,),
        collab_short_weights=(s.collab_short_weight,),
        collab_weights=(s.collab_weight,),
        collab_shrinks=(s.collab_shrink,),
        text_centerings=(s.text_centering,),
        collab_centerings=(s.collab_centering,),
        collab_dims=(s.collab_dim,),
    )


def _as_scored(s: TuneSettings, trained: bool) -> TuneSettings:
    """The current settings as the search keyed them (the collaborative ones unchanged
    without collaborative vectors; with them, a zero collab weight scores as text only),
    without the sequence space (rerankdb.tune_sequence blends it in after)."""
    s = replace(s, sequence_weight=0.0)
    if trained and s.collab_weight == 0:
        return replace(s, collab_shrink=0.0, collab_short_weight=0.0, collab_centering=0.0)
    return s


def current_context_weight(conn: psycopg.Connection[Any]) -> float:
    row = conn.execute(Q["context_items_weight"]).fetchone()
    assert row is not None
    return float(row[0])


def _objective(ndcg: dict[str, float], objective: str) -> float:
    return (ndcg["uniform"] + ndcg["popular"]) / 2 if objective == "mean" else ndcg[objective]


def _has_context(conn: psycopg.Connection[Any]) -> bool:
    row = conn.execute(Q["has_context"]).fetchone()
    return bool(row and row[0])


def _interval(values: np.ndarray, seed: int) -> Interval:
    return Interval(*metrics.bootstrap_ci(values, seed=seed))


def apply(
    conn: psycopg.Connection[Any],
    chosen: TuneSettings,
    *,
    encoder: Encoder | None,
    context_weight: float,
    dim: int | None,
    can_rebuild: bool = True,
    report: dict[str, Any] | None = None,
    context_items_weight: float | None = None,
) -> tuple[bool, bool]:
    """Write ``chosen`` to rerankdb.settings in one transaction under the exclusive fold lock,
    and with ``can_rebuild`` (it needs ``dim``) make every user follow at once: a training at
    its collaborative dimension if the trained one differs, else a rebuild if a half-life
    changed (without, the worker's next drain rebuilds).  Returns (retrained, rebuilt)."""
    with conn.transaction():
        conn.execute(Q["exclusive_fold_lock"])
        current, trained, _ = current_settings(conn)
        retrained = trained and can_rebuild and chosen.collab_dim != current.collab_dim
        rebuilt = can_rebuild and (retrained or chosen.half_lives != current.half_lives)
        conn.execute(
            Q["write_settings"], {**asdict(chosen), "report": None if report is None else Jsonb(report)}
        )
        if context_items_weight is not None:
            conn.execute(Q["write_context_items_weight"], {"weight": context_items_weight})
        if rebuilt:
            if dim is None:
                raise InvalidInputError("rerankdb.tune.apply: rebuilding users needs the dimension (dim)")
            if retrained:
                done = train(conn, encoder, context_weight, dim)  # and every user rebuilt
                log.info("tune: trained %d-d collaborative vectors in %.1f s", done.dim, done.seconds)
            else:
                counted = rebuild_all_in_transaction(conn, encoder, context_weight, dim, why="tuning")
                conn.execute(Q["refresh_centers"])
                log.info("tune: every user rebuilt with the new half-lives (%d interactions)", counted)
    # recommend's hybrid index carries the weights: rebuilt after the commit if they changed.
    stale = conn.execute(Q["hybrid_keys_stale"]).fetchone()
    if stale is not None and stale[0]:
        keys = conn.execute(Q["refresh_hybrid_keys"]).fetchone()
        log.info("tune: rebuilt the hybrid HNSW index for the new weights (%d keys)", keys[0] if keys else 0)
    return retrained, rebuilt


def tune(
    conn: psycopg.Connection[Any],
    *,
    objective: str = "mean",
    dry_run: bool = False,
    encoder: Encoder | None = None,
    context_weight: float = 0.5,
    dim: int | None = None,
    rebuild: bool = True,
    max_users: int = 2000,
    seed: int = 0,
    grid: Grid | None = None,
    progress: Callable[[int, int], None] | None = None,
    sequence: bool = True,
) -> TuneReport:
    """Search the grid on the installation's own log; write the best settings unless ``dry_run``.

    ``sequence``: with a sequence model installed, train one on the held-out
    log and choose settings.sequence_weight too (:mod:`rerankdb.tune_sequence`);
    without, the weight stays as it is.

    ``rebuild``: write what needs every user rebuilt (new half-lives) or a
    new training (a new collaborative dimension) and do it in the same
    transaction.  That needs ``dim``, and ``encoder`` if interactions carry
    context text; without them (or with ``rebuild=False``) the search keeps
    the trained dimension and a new half-life is left to the worker's next
    drain.  The transaction holds the exclusive fold lock: folds wait,
    readers do not.  A role that may not read the log and the vectors or
    write the settings gets PermissionDeniedError (README, "Roles").
    """
    if objective not in OBJECTIVES:
        raise InvalidInputError(f"objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}")
    try:
        return _tune(
            conn,
            objective,
            dry_run,
            encoder,
            context_weight,
            dim,
            rebuild,
            max_users,
            seed,
            grid,
            progress,
            sequence,
        )
    except psycopg.errors.InsufficientPrivilege as exc:
        raise PermissionDeniedError(
            "rerankdb tune reads the log and the vectors and writes rerankdb.settings: connect as "
            f"the owner or a member of rerankdb_worker ({str(exc).strip()})"
        ) from None


def _tune(
    conn: psycopg.Connection[Any],
    objective: str,
    dry_run: bool,
    encoder: Encoder | None,
    context_weight: float,
    dim: int | None,
    rebuild: bool,
    max_users: int,
    seed: int,
    grid: Grid | None,
    progress: Callable[[int, int], None] | None,
    sequence: bool,
) -> TuneReport:
    t0 = time.perf_counter()
    grid = grid or Grid()
    # Contexts are folded through the encoder: without one, no rebuild here.
    can_rebuild = rebuild and dim is not None and (encoder is not None or not _has_context(conn))
    fitted, current, trained, n_log = fit(conn, max_users=max_users, seed=seed)
    if not can_rebuild:
        grid = replace(grid, collab_dims=(current.collab_dim,))  # a new dimension needs a training
    trials, per_user = search(fitted, current, trained, grid, objective, progress)
    t_seq = time.perf_counter()
    seq_fit = tune_sequence.fit(conn, fitted) if sequence else None
    cur_key = _as_scored(current, trained)
    sequence_ndcg: dict[float, dict[str, float]] = {}
    if seq_fit is not None:
        # The best settings of the search (and the current ones), each with every weight.
        top = sorted(trials, key=lambda t: -t.objective(objective))[: tune_sequence.TOP_SETTINGS]
        bases = list(dict.fromkeys([t.settings for t in top] + [cur_key]))
        for settings, ndcg in tune_sequence.sweep(fitted, seq_fit, bases, trained).items():
            if settings not in per_user:
                trials.append(Trial(settings, {n: float(v.mean()) for n, v in ndcg.items()}))
                per_user[settings] = ndcg
        cur_key = replace(cur_key, sequence_weight=current.sequence_weight)
        if cur_key not in per_user:  # a weight off the grid: scored alone
            per_user.update(
                tune_sequence.sweep(
                    fitted, seq_fit, [_as_scored(current, trained)], trained, [current.sequence_weight]
                )
            )
        log.info("tune: sequence space tried in %.1f s", time.perf_counter() - t_seq)
    if seq_fit is None:  # the sequence weight was not measured: every trial keeps the current one
        keep = current.sequence_weight
        trials = [Trial(replace(t.settings, sequence_weight=keep), t.ndcg) for t in trials]
        per_user = {replace(k, sequence_weight=keep): v for k, v in per_user.items()}
        cur_key = replace(cur_key, sequence_weight=keep)
    chosen = max(trials, key=lambda t: t.objective(objective)).settings
    if seq_fit is not None:
        base = replace(chosen, sequence_weight=0.0)
        sequence_ndcg = {
            w: {n: float(v.mean()) for n, v in per_user[replace(base, sequence_weight=w)].items()}
            for w in tune_sequence.WEIGHTS
            if replace(base, sequence_weight=w) in per_user
        }
    cur = per_user[cur_key]
    sweep = {
        c: {n: float(v.mean()) for n, v in ndcg.items()}
        for c, ndcg in context_sweep(fitted, chosen, trained, seq=seq_fit).items()
    }
    chosen_context = max(sweep, key=lambda c: (_objective(sweep[c], objective), -c))
    current_context = current_context_weight(conn)
    report = TuneReport(
        objective=objective,
        users=len(fitted.holdout.users),
        interactions=n_log,
        trials=trials,
        current=current,
        chosen=chosen,
        current_ndcg={n: _interval(cur[n], seed) for n in LISTS},
        chosen_ndcg={n: _interval(per_user[chosen][n], seed) for n in LISTS},
        written=False,
        retrained=False,
        rebuilt=False,
        rebuild_pending=False,
        seconds=0.0,
        trained_collab=trained,
        per_user={"current": cur, "chosen": per_user[chosen]},
        context_ndcg=sweep,
        current_context_weight=current_context,
        chosen_context_weight=chosen_context,
        sequence_ndcg=sequence_ndcg,
        sequence_seconds=seq_fit.report.seconds if seq_fit is not None else 0.0,
    )
    if dry_run:
        return replace(report, seconds=time.perf_counter() - t0)
    retrained, rebuilt = apply(
        conn,
        chosen,
        encoder=encoder,
        context_weight=context_weight,
        dim=dim,
        can_rebuild=can_rebuild,
        report=replace(report, seconds=time.perf_counter() - t0).as_json(),
        context_items_weight=chosen_context,
    )
    report = replace(
        report,
        written=True,
        retrained=retrained,
        rebuilt=rebuilt,
        rebuild_pending=chosen.half_lives != current.half_lives and not rebuilt,
    )
    return replace(report, seconds=time.perf_counter() - t0)
