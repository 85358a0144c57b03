"""Exponential backoff: the one formula behind every retry delay."""

from __future__ import annotations


def exponential(failures: int, *, first: float, cap: float) -> float:
    """Delay after the ``failures``-th failure in a row: first, 2 first, 4 first, ... up to ``cap``."""
    if failures <= 0:
        return 0.0
    # Past 2^60 every delay is the cap; stopping there keeps the float finite.
    return float(min(first * 2 ** min(failures - 1, 60), cap))
