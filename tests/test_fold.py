"""The user-vector arithmetic, without a database."""

from __future__ import annotations

import numpy as np
import pytest

from rerankdb.fold import FoldParams, fold


def reference(
    times: np.ndarray, weights: np.ndarray, vecs: np.ndarray, half_life: float | None
) -> np.ndarray:
    ref = times.max()
    decay = np.ones_like(times) if half_life is None else 2.0 ** (-(ref - times) / half_life)
    return (weights * decay) @ vecs


@pytest.mark.parametrize("half_life", [None, 3600.0, 86400.0 * 30])
def test_incremental_folds_equal_one_fold(half_life: float | None) -> None:
    rng = np.random.default_rng(1)
    n, dim = 200, 16
    times = rng.uniform(0, 86400 * 10, n)  # out of order on purpose
    weights = rng.choice([1.0, 2.0, 3.0, -0.5, -1.0], n)
    vecs = rng.standard_normal((n, dim))
    params = FoldParams(half_life, 0.0)
    users = np.zeros(n, dtype=np.int64)

    sums, refs = np.zeros((1, dim)), np.array([-np.inf])
    for lo in range(0, n, 7):  # many small incremental batches
        sl = slice(lo, lo + 7)
        sums, refs = fold(sums, refs, users[sl], times[sl], weights[sl], vecs[sl], params)
    once, _ = fold(np.zeros((1, dim)), np.array([-np.inf]), users, times, weights, vecs, params)

    assert refs[0] == times.max()
    np.testing.assert_allclose(sums[0], once[0], rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(once[0], reference(times, weights, vecs, half_life), rtol=1e-9, atol=1e-9)


def test_several_users_in_one_batch_stay_apart() -> None:
    vecs = np.eye(3)
    sums, refs = fold(
        np.zeros((2, 3)),
        np.full(2, -np.inf),
        np.array([0, 1, 0]),
        np.array([10.0, 20.0, 30.0]),
        np.array([1.0, 2.0, 1.0]),
        vecs,
        FoldParams(None, 0.0),
    )
    np.testing.assert_allclose(sums, [[1, 0, 1], [0, 2, 0]])
    np.testing.assert_allclose(refs, [30.0, 20.0])


def test_decay_halves_weight_per_half_life() -> None:
    sums, _ = fold(
        np.zeros((1, 2)),
        np.array([-np.inf]),
        np.array([0, 0]),
        np.array([0.0, 100.0]),
        np.array([1.0, 1.0]),
        np.eye(2),
        FoldParams(100.0, 0.0),
    )
    np.testing.assert_allclose(sums[0], [0.5, 1.0])
