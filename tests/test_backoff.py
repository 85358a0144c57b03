"""Retry delays: one exponential formula behind the item queue and the worker's reconnects."""

from __future__ import annotations

from rerankdb.backoff import exponential
from rerankdb.item_refresh import backoff_seconds
from rerankdb.worker import retry_delay


def test_backoff_grows_and_is_capped() -> None:
    assert [backoff_seconds(a) for a in (1, 2, 3)] == [5, 10, 20]
    assert backoff_seconds(50) == 3600


def test_worker_retry_delay_doubles_from_half_a_second_to_thirty() -> None:
    assert [retry_delay(n) for n in range(1, 9)] == [0.5, 1, 2, 4, 8, 16, 30, 30]


def test_exponential_starts_at_first_and_never_passes_the_cap() -> None:
    assert exponential(0, first=2.0, cap=10.0) == 0.0
    assert [exponential(n, first=2.0, cap=10.0) for n in (1, 2, 3, 4)] == [2.0, 4.0, 8.0, 10.0]
    assert exponential(10_000, first=1.0, cap=7.0) == 7.0, "no overflow after many failures"
