"""rerankdb.rerank's score in numpy, for many settings at once (the tuner's inner loop).

The same formula as ``sql/functions/rerank.sql`` and ``blend.sql``:
``tests/test_tune.py`` checks that the two rank alike.  A user's query vector
of a space is normalize((1 - s) center(long) + s center(short)), with
center(v) = normalize(v - share * average user vector); an item's score is
the text cosine, or (1 - w) text + w collaborative where both have a
collaborative vector.  Dots of the blend come from the dots of its parts, so
trying another blend weight costs no new products with the candidates.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from rerankdb.fold import EPS

CENTER_MIN_USERS = 50  # rerankdb.refresh_centers' default: fewer users, no center


def unit(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(rows scaled to unit length, which rows have a direction: norm > EPS)."""
    norms = np.linalg.norm(x, axis=1)
    ok = norms > EPS
    out = np.zeros_like(x)
    out[ok] = x[ok] / norms[ok, None]
    return out, ok


def center(v: np.ndarray, c: np.ndarray | None, share: float) -> np.ndarray:
    """rerankdb.center on rows: normalize(v - share * c); v where that is (nearly) zero."""
    if c is None or share <= 0:
        return v
    diff = v - share * c
    norms = np.linalg.norm(diff, axis=1, keepdims=True)
    return np.where(norms > 1e-6, diff / np.maximum(norms, 1e-30), v)


def blend_dots(long_dots: np.ndarray, short_dots: np.ndarray, gram: np.ndarray, share: float) -> np.ndarray:
    """Candidate dots of rerankdb.blend(long, short, share) from those of its parts:
    q = (1 - s) l + s t over |(1 - s) l + s t|, with gram = l . t per user."""
    if share <= 0:
        return long_dots
    if share >= 1:
        return short_dots
    norm = np.sqrt(np.maximum((1 - share) ** 2 + share**2 + 2 * share * (1 - share) * gram, 0.0))
    mixed = ((1 - share) * long_dots + share * short_dots) / np.maximum(norm, 1e-30)[:, None]
    return np.where((norm > 1e-6)[:, None], mixed, long_dots)


CHUNK = 256  # users per gather of candidate vectors: 256 x 100 x 384 float64 is 79 MB


@dataclass(frozen=True)
class Candidates:
    """Each user's candidate list, as rows of one matrix of item vectors."""

    vectors: np.ndarray  # (N, d): one row per distinct item
    positions: np.ndarray  # (U, L): the row of each candidate

    def dots(self, queries: np.ndarray) -> np.ndarray:
        """(U, L) dot products of user u's query (row u of ``queries``) with u's candidates,
        gathered a chunk of users at a time (memory O(CHUNK x L x d), not O(U x L x d))."""
        out = np.empty(self.positions.shape)
        for lo in range(0, len(self.positions), CHUNK):
            block = self.vectors[self.positions[lo : lo + CHUNK]]
            out[lo : lo + CHUNK] = np.einsum("ud,ucd->uc", queries[lo : lo + CHUNK], block)
        return out


@dataclass
class Space:
    """One space's user vectors (long and short term) for one pair of half-lives."""

    long: np.ndarray  # (U, d) unit
    short: np.ndarray  # (U, d) unit (zero rows where none)
    has_long: np.ndarray  # (U,)
    has_short: np.ndarray  # (U,)
    center: np.ndarray | None

    parts: dict[tuple[int, float], tuple[np.ndarray, np.ndarray, np.ndarray]] = field(default_factory=dict)

    def query_dots(self, cands: Candidates, share: float, centering: float) -> np.ndarray:
        """(U, L) dots of each user's query vector (rerankdb.blend) with their candidates.
        The dots of the two centered parts are computed once per list and centering;
        each share only mixes them."""
        key = (id(cands), centering)
        if key not in self.parts:
            lc = center(self.long, self.center, centering)
            sc = center(self.short, self.center, centering)
            self.parts[key] = (cands.dots(lc), cands.dots(sc), np.einsum("ud,ud->u", lc, sc))
        long_dots, short_dots, gram = self.parts[key]
        mixed = blend_dots(long_dots, short_dots, gram, share)
        return np.where(self.has_short[:, None], mixed, long_dots)

    def query(self, share: float, centering: float) -> np.ndarray:
        """(U, d) each user's query vector: rerankdb.blend of the centered parts."""
        lc = center(self.long, self.center, centering)
        if share <= 0:
            return lc
        sc = center(self.short, self.center, centering)
        mixed, ok = unit((1 - share) * lc + share * sc) if share < 1 else (sc, self.has_short)
        return np.where((self.has_short & ok)[:, None], mixed, lc)


def space(sums_long: np.ndarray, sums_short: np.ndarray) -> Space:
    long, has_long = unit(sums_long.astype(np.float32).astype(np.float64))
    short, has_short = unit(sums_short.astype(np.float32).astype(np.float64))
    c = long[has_long].mean(axis=0) if has_long.sum() >= CENTER_MIN_USERS else None
    return Space(long, short, has_long, has_short & has_long, c)


def ndcg_from_scores(scores: np.ndarray, target_pos: np.ndarray, cold: np.ndarray) -> np.ndarray:
    """Per-user NDCG@10 of the target, ranked by score (ties by input position); a cold user
    (no vector) keeps the input order, as rerank does."""
    rows = np.arange(len(scores))
    t = scores[rows, target_pos][:, None]
    pos = np.arange(scores.shape[1])[None, :]
    rank = 1 + ((scores > t) | ((scores == t) & (pos < target_pos[:, None]))).sum(axis=1)
    rank = np.where(cold, target_pos + 1, rank)
    return np.where(rank <= 10, 1.0 / np.log2(rank + 1), 0.0)
