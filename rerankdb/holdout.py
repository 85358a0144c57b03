"""The tuner's held-out log: each sampled user's newest interaction, and candidate lists for it.

Pure numpy but for :func:`read_log`.  A user is sampled when their newest
interaction is positive, they have an older one, and the catalog has enough
items they never touched for a list.  Lists are the target and 99 such items
(fewer in a small catalog), drawn uniformly or in proportion to each item's
positive interactions in the history, shuffled; fixed by the generator.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import psycopg

from rerankdb.fold import problems
from rerankdb.sqlfiles import queries

Q = queries("holdout")
NEGATIVES = 99


@dataclass
class Holdout:
    """The sampled users' histories, their held-out targets and their candidate lists."""

    users: np.ndarray  # (U,) user ids
    user_idx: np.ndarray  # (R,) history row -> index into users
    items: np.ndarray  # (R,) item ids of the history rows
    weights: np.ndarray  # (R,)
    times: np.ndarray  # (R,) epoch seconds
    lists: dict[str, np.ndarray]  # list name -> (U, 100) candidate item ids
    target_pos: dict[str, np.ndarray]  # list name -> (U,) position of the target in its list


def read_log(conn: psycopg.Connection[Any], now: float, tolerance: float) -> np.ndarray:
    """The log as a structured array (user, item, weight, time), oldest first per user;
    rows a fold would refuse (fold.problems) are left out, as a rebuild leaves them."""
    rows = conn.execute(Q["log"], binary=True).fetchall()
    arr = np.array(rows, dtype=[("user", "i8"), ("item", "i8"), ("weight", "f8"), ("time", "f8")])
    bad = problems(arr["time"], arr["weight"], now, tolerance)
    if bad:
        arr = np.delete(arr, list(bad))
    return arr


def read_catalog(conn: psycopg.Connection[Any]) -> np.ndarray:
    """Every item rerank can score by its text, sorted."""
    return np.array([r[0] for r in conn.execute(Q["catalog"]).fetchall()], dtype=np.int64)


def hold_out(
    log_rows: np.ndarray, catalog: np.ndarray, rng: np.random.Generator, max_users: int
) -> tuple[Holdout, np.ndarray]:
    """Sample users whose newest interaction is positive and who have a history; hold it out.

    Returns the holdout and the training rows (every user's log without the
    held-out targets), from which the collaborative vectors are learned.
    """
    users, starts, counts = np.unique(log_rows["user"], return_index=True, return_counts=True)
    last = starts + counts - 1
    # Lists of 100 where the catalog allows; a small catalog gets shorter lists,
    # and a user who has seen too much of it to fill one is not sampled.
    negatives = min(NEGATIVES, len(catalog) // 2)
    order = np.lexsort((log_rows["item"], log_rows["user"]))
    u, i = log_rows["user"][order], log_rows["item"][order]
    first = np.r_[True, (u[1:] != u[:-1]) | (i[1:] != i[:-1])]  # first row of each (user, item)
    distinct = np.bincount(np.searchsorted(users, u[first]), minlength=len(users))
    eligible = np.flatnonzero(
        (counts >= 2) & (log_rows["weight"][last] > 0) & (len(catalog) - distinct >= negatives)
    )
    if len(eligible) > max_users:
        eligible = np.sort(rng.choice(eligible, size=max_users, replace=False))
    keep = np.ones(len(log_rows), dtype=bool)
    keep[last[eligible]] = False  # every sampled user's target leaves the training rows
    train_rows = log_rows[keep]
    sampled = users[eligible]
    in_sample = np.isin(log_rows["user"], sampled) & keep
    hist = log_rows[in_sample]
    user_idx = np.searchsorted(sampled, hist["user"])
    targets = log_rows["item"][last[eligible]]
    seen_by = _seen_items(log_rows[np.isin(log_rows["user"], sampled)], sampled)
    popularity = _popularity(train_rows, catalog)
    lists, positions = {}, {}
    for name, probs in (("uniform", None), ("popular", popularity)):
        lists[name], positions[name] = _candidate_lists(targets, seen_by, catalog, probs, negatives, rng)
    return (
        Holdout(sampled, user_idx, hist["item"], hist["weight"], hist["time"], lists, positions),
        train_rows,
    )


def _seen_items(rows: np.ndarray, users: np.ndarray) -> list[set[int]]:
    seen: list[set[int]] = [set() for _ in users]
    for u, i in zip(np.searchsorted(users, rows["user"]).tolist(), rows["item"].tolist(), strict=True):
        seen[u].add(i)
    return seen


def _popularity(rows: np.ndarray, catalog: np.ndarray) -> np.ndarray:
    """Probability of each catalog item in a popularity-sampled list: its positive count."""
    pos = rows[rows["weight"] > 0]
    idx = np.searchsorted(catalog, pos["item"])
    counts = np.bincount(idx, minlength=len(catalog)).astype(np.float64)
    return counts / counts.sum() if counts.sum() > 0 else np.full(len(catalog), 1 / len(catalog))


def _candidate_lists(
    targets: np.ndarray,
    seen_by: list[set[int]],
    catalog: np.ndarray,
    probs: np.ndarray | None,
    negatives: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """(U, negatives + 1) lists: the target and unseen items (uniform or by ``probs``), shuffled."""
    lists = np.empty((len(targets), negatives + 1), dtype=np.int64)
    for u, target in enumerate(targets.tolist()):
        seen = seen_by[u]
        chosen: list[int] = []
        picked: set[int] = set()
        rounds = 0
        while len(chosen) < negatives:
            # Draws with replacement, duplicates and seen items skipped: sampling
            # without replacement in proportion to ``probs``.  A user who has seen
            # most of the popular items gets the rest uniformly after 20 rounds.
            p = probs if rounds < 20 else None
            rounds += 1
            for item in rng.choice(catalog, size=2 * negatives, p=p).tolist():
                if item not in seen and item not in picked:
                    picked.add(item)
                    chosen.append(item)
                    if len(chosen) == negatives:
                        break
        row = np.array([target, *chosen], dtype=np.int64)
        rng.shuffle(row)
        lists[u] = row
    return lists, np.argmax(lists == targets[:, None], axis=1)
