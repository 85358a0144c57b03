"""Ranking metrics for one held-out target per user, and bootstrap intervals."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def target_rank(ranked: Sequence[int], target: int) -> int | None:
    """1-based position of ``target`` in ``ranked``; None if absent."""
    for pos, item in enumerate(ranked, start=1):
        if item == target:
            return pos
    return None


def ndcg_at(rank: int | None, k: int = 10) -> float:
    """NDCG@k with a single relevant item: 1 / log2(rank + 1) within the top k."""
    return 1.0 / math.log2(rank + 1) if rank is not None and rank <= k else 0.0


def recall_at(rank: int | None, k: int = 10) -> float:
    return 1.0 if rank is not None and rank <= k else 0.0


def reciprocal_rank(rank: int | None) -> float:
    return 1.0 / rank if rank is not None else 0.0


METRICS = {"ndcg@10": ndcg_at, "recall@10": recall_at, "mrr": reciprocal_rank}


def per_user(ranks: Sequence[int | None]) -> dict[str, np.ndarray]:
    return {name: np.array([fn(r) for r in ranks]) for name, fn in METRICS.items()}


def bootstrap_ci(
    values: np.ndarray, *, resamples: int = 1000, seed: int = 0, level: float = 0.95
) -> tuple[float, float, float]:
    """(mean, low, high): the mean over users and a percentile bootstrap interval."""
    rng = np.random.default_rng(seed)
    n = len(values)
    if n == 0:
        return float("nan"), float("nan"), float("nan")
    means = values[rng.integers(0, n, size=(resamples, n))].mean(axis=1)
    alpha = (1 - level) / 2
    return float(values.mean()), float(np.quantile(means, alpha)), float(np.quantile(means, 1 - alpha))
