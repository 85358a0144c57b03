"""Small shared helpers for tests: reference ranking and data loading."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from rerankdb import Client, Item


def unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def load_items(client: Client, vectors: np.ndarray, ids: Sequence[int] | None = None) -> list[int]:
    ids = list(range(1, len(vectors) + 1)) if ids is None else list(ids)
    client.upsert_items(Item(i, f"item {i}") for i in ids)
    client.set_item_vectors(ids, vectors)
    return ids


def reference_rerank(
    user: np.ndarray | None, candidates: Sequence[int | None], vectors: dict[int, np.ndarray]
) -> list[tuple[int, float | None]]:
    """What rerankdb.rerank must return, computed in numpy (float64)."""
    first: dict[int, int] = {}
    for pos, c in enumerate(candidates):
        if c is not None and c not in first:
            first[c] = pos
    scored, unscored = [], []
    for c, pos in first.items():
        if user is not None and c in vectors:
            scored.append((-float(unit(user) @ unit(vectors[c])), pos, c))
        else:
            unscored.append((pos, c))
    scored.sort()
    unscored.sort()
    return [(c, -s) for s, _, c in scored] + [(c, None) for _, c in unscored]


def assert_same_ranking(got: list[tuple[int, float | None]], want: list[tuple[int, float | None]]) -> None:
    """Same rows; scores within float32 rounding; order equal except among near-ties."""
    assert sorted(i for i, _ in got) == sorted(i for i, _ in want)
    assert len(got) == len(want)
    want_score = dict(want)
    for (gi, gs), (wi, ws) in zip(got, want, strict=True):
        assert (gs is None) == (want_score[gi] is None), (gi, gs)
        if gs is not None:
            assert abs(gs - want_score[gi]) < 1e-5, (gi, gs, want_score[gi])
        if gi != wi:
            # Allowed only where float32 and float64 disagree on a near-tie.
            assert ws is not None and gs is not None and abs(want_score[gi] - ws) < 1e-5, (gi, wi)
