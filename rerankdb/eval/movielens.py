"""The evaluation protocol on MovieLens-format data (pure: no database).

1. Every rating is an interaction.  Iterative 5-core: users and items with
   fewer than 5 ratings are dropped until none is left.
2. Each user's ratings are sorted by (timestamp, item id); the last one is the
   test target, the one before it the validation target.  A split's history is
   everything before its target.  Popularity counts of a split come from the
   histories of that split only, so no target (of any user) is ever counted.
3. Candidate lists: the target plus 99 negatives the user never interacted
   with, drawn uniformly (``uni100``) or in proportion to the split's
   popularity (``pop100``), shuffled; fixed by a seed and written to disk with
   their SHA-256.
"""

from __future__ import annotations

import csv
import hashlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rerankdb.errors import InvalidInputError

SPLITS = ("validation", "test")
LISTS = ("uni100", "pop100")
NEGATIVES = 99


@dataclass(frozen=True)
class Rating:
    user_id: int
    item_id: int
    rating: float
    timestamp: int


@dataclass(frozen=True)
class Dataset:
    ratings: list[Rating]
    titles: dict[int, str]
    genres: dict[int, list[str]]

    def text(self, item_id: int) -> str:
        """What the encoder embeds: the title and the genres."""
        genres = [g for g in self.genres.get(item_id, []) if g != "(no genres listed)"]
        title = self.titles.get(item_id, f"movie {item_id}")
        return f"{title}. {', '.join(genres)}" if genres else title


def load(path: Path) -> Dataset:
    """Read ``ratings.csv`` and ``movies.csv`` (ml-latest-small format) from a folder."""
    ratings_file, movies_file = path / "ratings.csv", path / "movies.csv"
    for required in (ratings_file, movies_file):
        if not required.is_file():
            raise InvalidInputError(
                f"{required} not found: expected a MovieLens folder with ratings.csv and movies.csv "
                "(the ml-latest-small format)"
            )
    ratings = []
    with ratings_file.open(encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        missing = {"userId", "movieId", "rating", "timestamp"} - set(reader.fieldnames or [])
        if missing:
            raise InvalidInputError(f"{ratings_file} lacks column(s) {', '.join(sorted(missing))}")
        for line, row in enumerate(reader, start=2):
            try:
                ratings.append(
                    Rating(
                        int(row["userId"]), int(row["movieId"]), float(row["rating"]), int(row["timestamp"])
                    )
                )
            except (TypeError, ValueError):
                raise InvalidInputError(f"{ratings_file}:{line}: not a rating row: {row}") from None
    titles, genres = {}, {}
    with movies_file.open(encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            item = int(row["movieId"])
            titles[item] = row["title"]
            genres[item] = row["genres"].split("|")
    return Dataset(ratings, titles, genres)


def five_core(ratings: list[Rating], k: int = 5) -> list[Rating]:
    """Drop users and items with fewer than k ratings, repeatedly, until stable."""
    current = ratings
    while True:
        users = Counter(r.user_id for r in current)
        items = Counter(r.item_id for r in current)
        kept = [r for r in current if users[r.user_id] >= k and items[r.item_id] >= k]
        if len(kept) == len(current):
            return kept
        current = kept


@dataclass(frozen=True)
class Split:
    """One user's held-out target and the history before it, for one split."""

    user_id: int
    target: int
    target_time: int
    history: list[Rating]


def split(ratings: list[Rating]) -> dict[str, list[Split]]:
    """Leave-last-out: test = last, validation = second last, by (timestamp, item id)."""
    by_user: dict[int, list[Rating]] = {}
    for r in ratings:
        by_user.setdefault(r.user_id, []).append(r)
    out: dict[str, list[Split]] = {"validation": [], "test": []}
    for user in sorted(by_user):
        seq = sorted(by_user[user], key=lambda r: (r.timestamp, r.item_id))
        if len(seq) < 3:
            continue
        out["test"].append(Split(user, seq[-1].item_id, seq[-1].timestamp, seq[:-1]))
        out["validation"].append(Split(user, seq[-2].item_id, seq[-2].timestamp, seq[:-2]))
    return out


def popularity(splits: list[Split]) -> Counter[int]:
    """Interaction counts over the histories of one split (targets never counted)."""
    return Counter(r.item_id for s in splits for r in s.history)


def candidate_lists(
    splits: list[Split], all_items: list[int], seen: dict[int, set[int]], pop: Counter[int], seed: int
) -> dict[str, dict[int, list[int]]]:
    """uni100 and pop100 lists per user: the target and 99 never-seen negatives, shuffled."""
    rng = np.random.default_rng(seed)
    items = np.array(sorted(all_items), dtype=np.int64)
    weights = np.array([pop.get(int(i), 0) for i in items], dtype=np.float64)
    out: dict[str, dict[int, list[int]]] = {name: {} for name in LISTS}
    for s in splits:
        allowed = np.array([int(i) not in seen[s.user_id] for i in items])
        pool = items[allowed]
        n = min(NEGATIVES, len(pool))
        uni = rng.choice(pool, n, replace=False)
        w = weights[allowed]
        # Items never seen in training have weight 0: give them a tiny weight so
        # a user who saw nearly everything popular still gets 99 negatives.
        w = w + 1e-9
        popneg = rng.choice(pool, n, replace=False, p=w / w.sum())
        for name, neg in (("uni100", uni), ("pop100", popneg)):
            cands = np.concatenate([[s.target], neg])
            rng.shuffle(cands)
            out[name][s.user_id] = [int(c) for c in cands]
    return out


def write_lists(lists: dict[str, dict[str, dict[int, list[int]]]], folder: Path) -> dict[str, str]:
    """Write every list as CSV (user_id, space-separated candidates); return file -> sha256."""
    folder.mkdir(parents=True, exist_ok=True)
    sums = {}
    for split_name, by_list in lists.items():
        for list_name, per_user in by_list.items():
            name = f"{split_name}_{list_name}.csv"
            lines = ["user_id,candidates"] + [
                f"{u},{' '.join(map(str, c))}" for u, c in sorted(per_user.items())
            ]
            data = ("\n".join(lines) + "\n").encode()
            (folder / name).write_bytes(data)
            sums[name] = hashlib.sha256(data).hexdigest()
    (folder / "SHA256SUMS").write_text("".join(f"{h}  {n}\n" for n, h in sorted(sums.items())))
    return sums


@dataclass(frozen=True)
class Protocol:
    data: Dataset
    ratings: list[Rating]  # after 5-core
    splits: dict[str, list[Split]]
    popularity: dict[str, Counter[int]]
    lists: dict[str, dict[str, dict[int, list[int]]]]  # split -> list name -> user -> candidates
    items: list[int]


def build(path: Path, seed: int) -> Protocol:
    data = load(path)
    ratings = five_core(data.ratings)
    if not ratings:
        raise InvalidInputError(f"no ratings left in {path} after the 5-core filter")
    splits = split(ratings)
    items = sorted({r.item_id for r in ratings})
    seen: dict[int, set[int]] = {}
    for r in ratings:
        seen.setdefault(r.user_id, set()).add(r.item_id)
    pops = {name: popularity(splits[name]) for name in SPLITS}
    lists = {
        name: candidate_lists(splits[name], items, seen, pops[name], seed + k)
        for k, name in enumerate(SPLITS)
    }
    return Protocol(data, ratings, splits, pops, lists, items)
