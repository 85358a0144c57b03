"""The offline evaluation: protocol, metrics, and one run through the real system.

Synthetic data in the MovieLens file format (the real dataset is licensed and
stays out of the repository and the tests).
"""

from __future__ import annotations

import csv
import json
import math
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from rerankdb import metrics
from rerankdb.config import Settings
from rerankdb.errors import InvalidInputError
from rerankdb.eval.movielens import Rating, build, five_core, load, split, write_lists

GENRES = ["Action", "Comedy", "Drama", "Sci-Fi", "Romance", "Horror", "Documentary", "Animation"]


def write_movielens(folder: Path, *, users: int = 120, movies: int = 300, seed: int = 0) -> Path:
    """A small dataset in the ml-latest-small format: users prefer two genres each."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    movie_genres = {
        m: list(rng.choice(GENRES, int(rng.integers(1, 3)), replace=False)) for m in range(1, movies + 1)
    }
    with (folder / "movies.csv").open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\r\n")
        w.writerow(["movieId", "title", "genres"])
        for m, g in movie_genres.items():
            w.writerow([m, f"Movie {m} ({1950 + m % 70})", "|".join(g)])
    with (folder / "ratings.csv").open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\r\n")
        w.writerow(["userId", "movieId", "rating", "timestamp"])
        for u in range(1, users + 1):
            liked = set(rng.choice(GENRES, 2, replace=False))
            pool = [m for m, g in movie_genres.items() if liked & set(g)]
            n = int(rng.integers(12, 30))
            for k, m in enumerate(rng.choice(pool, min(n, len(pool)), replace=False)):
                w.writerow([u, m, float(rng.choice([3.0, 3.5, 4.0, 4.5, 5.0])), 1_000_000_000 + 3600 * k])
        w.writerow([users + 1, 1, 4.0, 1_000_000_000])  # a user below 5 ratings
    return folder


# --- protocol ------------------------------------------------------------------


def r(user: int, item: int, ts: int, rating: float = 4.0) -> Rating:
    return Rating(user, item, rating, ts)


def test_five_core_is_iterative() -> None:
    # Users 1-5 rate items 1-5 (a 5-core), user 6 rates items 1-4 and 6, item 6 has only user 6:
    # dropping item 6 leaves user 6 with 4 ratings, so user 6 goes too.
    ratings = [r(u, i, 0) for u in range(1, 6) for i in range(1, 6)]
    ratings += [r(6, i, 0) for i in (1, 2, 3, 4, 6)]
    kept = five_core(ratings)
    assert {x.user_id for x in kept} == {1, 2, 3, 4, 5}
    assert {x.item_id for x in kept} == {1, 2, 3, 4, 5}


def test_split_is_leave_last_out_with_ties_by_item_id() -> None:
    ratings = [r(1, 30, 5), r(1, 10, 1), r(1, 20, 5), r(1, 40, 3), r(1, 50, 2)]
    s = split(ratings)
    (test,), (val,) = s["test"], s["validation"]
    assert (test.target, val.target) == (30, 20), "same timestamp: the larger item id is later"
    assert [x.item_id for x in test.history] == [10, 50, 40, 20]
    assert [x.item_id for x in val.history] == [10, 50, 40]


def test_no_target_leaks_into_history_or_popularity(tmp_path: Path) -> None:
    proto = build(write_movielens(tmp_path / "ml"), seed=1)
    for name in ("validation", "test"):
        splits = proto.splits[name]
        for s in splits:
            assert all((x.timestamp, x.item_id) < (s.target_time, s.target) for x in s.history)
        assert proto.popularity[name] == Counter(x.item_id for s in splits for x in s.history)
        assert sum(proto.popularity[name].values()) == sum(len(s.history) for s in splits)
    # the test target is never in any test history of its own user, nor counted for that split
    for s in proto.splits["test"]:
        assert (
            s.history[-1].item_id
            == next(v for v in proto.splits["validation"] if v.user_id == s.user_id).target
        )


def test_candidate_lists(tmp_path: Path) -> None:
    proto = build(write_movielens(tmp_path / "ml"), seed=3)
    assert len(proto.items) > 150, "enough items that most lists are full"
    seen: dict[int, set[int]] = {}
    for x in proto.ratings:
        seen.setdefault(x.user_id, set()).add(x.item_id)
    for name in ("validation", "test"):
        targets = {s.user_id: s.target for s in proto.splits[name]}
        for list_name in ("uni100", "pop100"):
            for user, cands in proto.lists[name][list_name].items():
                unseen = len(proto.items) - len(seen[user])
                assert len(cands) == len(set(cands)) == 1 + min(99, unseen)
                assert cands.count(targets[user]) == 1
                assert not (set(cands) - {targets[user]}) & seen[user], "negatives were never interacted with"
    # pop100 negatives are more popular than uni100 ones
    pop = proto.popularity["test"]
    mean_pop = {
        name: np.mean([pop.get(c, 0) for cands in proto.lists["test"][name].values() for c in cands])
        for name in ("uni100", "pop100")
    }
    assert mean_pop["pop100"] > mean_pop["uni100"]


def test_lists_reproduce_byte_for_byte(tmp_path: Path) -> None:
    data = write_movielens(tmp_path / "ml")
    a = write_lists(build(data, seed=7).lists, tmp_path / "a")
    b = write_lists(build(data, seed=7).lists, tmp_path / "b")
    c = write_lists(build(data, seed=8).lists, tmp_path / "c")
    assert a == b and a != c
    for name in a:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert (tmp_path / "a" / "SHA256SUMS").read_text() == (tmp_path / "b" / "SHA256SUMS").read_text()


def test_load_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match=r"ratings\.csv not found"):
        load(tmp_path)
    data = write_movielens(tmp_path / "ml")
    with (data / "ratings.csv").open("a") as f:
        f.write("7,abc,4.0,1\r\n")
    with pytest.raises(InvalidInputError, match=r"ratings.csv:\d+: not a rating row"):
        load(data)


# --- metrics -------------------------------------------------------------------


def test_metrics_on_hand_computed_cases() -> None:
    ranked = [5, 9, 7, 1]
    assert metrics.target_rank(ranked, 7) == 3
    assert metrics.target_rank(ranked, 2) is None
    assert metrics.ndcg_at(1) == 1.0
    assert metrics.ndcg_at(3) == pytest.approx(0.5)
    assert metrics.ndcg_at(10) == pytest.approx(1 / math.log2(11))
    assert metrics.ndcg_at(11) == 0.0 and metrics.ndcg_at(None) == 0.0
    assert (metrics.recall_at(10), metrics.recall_at(11)) == (1.0, 0.0)
    assert metrics.reciprocal_rank(4) == 0.25 and metrics.reciprocal_rank(None) == 0.0
    per_user = metrics.per_user([1, 3, None])
    assert per_user["ndcg@10"].tolist() == pytest.approx([1.0, 0.5, 0.0])


def test_bootstrap_interval() -> None:
    mean, low, high = metrics.bootstrap_ci(np.full(50, 0.3))
    assert mean == low == high == pytest.approx(0.3)
    values = np.random.default_rng(0).random(400)
    mean, low, high = metrics.bootstrap_ci(values)
    assert low < mean < high and high - low < 0.1


# --- end to end ------------------------------------------------------------------


def test_eval_runs_through_the_product(
    tmp_path: Path, server_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rerankdb import sequence_space
    from rerankdb.eval import features, runner

    monkeypatch.setattr(sequence_space, "MIN_USERS", 3)  # 40 users: a sequence model all the same

    data = write_movielens(tmp_path / "ml", users=40, movies=200)
    out = tmp_path / "out"
    summary = runner.run(data, out, seed=5, settings=Settings(database_url=server_url), collab_dim=6)
    saved = json.loads((out / "results.json").read_text())
    assert saved["lists_sha256"] == summary["lists_sha256"]
    assert saved["collab_dim"] == 6, "--collab-dim reaches the training"
    for name, digest in saved["lists_sha256"].items():
        assert f"{digest}  {name}" in (out / "lists" / "SHA256SUMS").read_text()
    test = saved["results"]["test"]
    assert set(test) == {
        "rerankdb, tuned (objective mean)",
        "rerankdb, tuned for uniform",
        "rerankdb, tuned for popular",
        "rerankdb tuned, long-term only (short weights 0)",
        "rerankdb tuned, text only",
        "rerankdb tuned, collaborative only",
        "rerankdb 0005 defaults (previous stop)",
        "random",
        "popularity",
        "mean of history",
        f"EASE (L2 {saved['ease_l2']:g}, chosen on validation)",
        "item-to-next co-occurrence",
        "rerankdb tuned, linear spaces only (sequence weight 0)",
        "rerankdb tuned, sequence space alone (sequence weight 1)",
        "SASRec, BCE with one sampled negative (its paper's loss; no text)",
    }
    seeds = saved["results"]["test sequence seeds"]
    rows = set(runner.SEQUENCE_ROWS)
    assert set(seeds) == rows | {f"{r}, {runner.COLD_SLICE}" for r in rows} | {runner.VISITOR_ROW}
    for by_list in seeds.values():
        assert all(len(v) == len(runner.SEQUENCE_SEEDS) for v in by_list.values())
    for row in rows:  # Seed 0's figure is the tables'.
        assert seeds[row]["uni100"][0] == pytest.approx(test[row]["uni100"]["ndcg@10"]["mean"])
        cold = saved["results"]["test cold-start"][row]["uni100"]["ndcg@10"]["mean"]
        assert seeds[f"{row}, {runner.COLD_SLICE}"]["uni100"][0] == pytest.approx(cold)
    assert "sequence_weight" in saved["tuning"]["flat"]
    full = saved["results"]["test full catalog"]
    assert set(full) == {
        "rerankdb.recommend (tuned, hybrid)",
        "rerank over the whole catalog (exact; what recommend's index approximates)",
        "text index only (0006's recommend)",
        "popularity",
    }
    # recommend finds what the exact ranking finds, nearly: its index stands for the score.
    exact = full["rerank over the whole catalog (exact; what recommend's index approximates)"]
    assert (
        full["rerankdb.recommend (tuned, hybrid)"]["recall@10"]["mean"] >= exact["recall@10"]["mean"] - 0.05
    )
    for split_name in ("validation", "test"):
        sweep = saved["results"][f"{split_name} diversity"]
        assert set(sweep) == {"0", "0.1", "0.2", "0.3", "0.5"}
        for row in sweep.values():
            assert all(-1 <= row[n]["ils@10"] <= 1 for n in ("uni100", "pop100"))
    context = saved["results"]["test context"]
    assert len(context) == 4 and all(0 <= m["uni100"]["mean"] <= 1 for m in context.values())
    visitor = context[f"first-time visitor: context alone (newest {features.CONTEXT_ITEMS} items)"]
    assert seeds[runner.VISITOR_ROW]["uni100"][0] == pytest.approx(visitor["uni100"]["mean"])
    assert "Diversity (test split)" in (out / "results.md").read_text()
    cold = saved["results"]["test cold-start"]
    assert (
        cold["users"] >= 0 and "rerankdb, tuned for popular" in cold and "item-to-next co-occurrence" in cold
    )
    for by_list in test.values():
        for list_name in ("uni100", "pop100"):
            m = by_list[list_name]["ndcg@10"]
            assert 0 <= m["ci_low"] <= m["mean"] <= m["ci_high"] <= 1
    assert set(saved["tuning"]) == {"flat", "linear"} and saved["weighting"] in saved["tuning"]
    assert saved["tuning"][saved["weighting"]]["trials"] == len(saved["tuning_trials"][saved["weighting"]])
    # The tuned settings are what the database holds at the end.
    assert saved["chosen"]["config"] == saved["variants"]["rerankdb, tuned (objective mean)"]["config"]
    md = (out / "results.md").read_text()
    assert "| rerankdb, tuned (objective mean) | uni100 |" in md and "Best blend for each pair" in md
    assert (out / "ndcg10.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# --- baselines ---------------------------------------------------------------------


def _splits(histories: dict[int, list[int]]) -> list[Any]:
    from rerankdb.eval.movielens import Split

    return [Split(u, 0, 0, [r(u, i, k) for k, i in enumerate(h)]) for u, h in histories.items()]


def test_item_to_next_ranks_what_followed_the_last_items() -> None:
    from rerankdb.eval import baselines

    # Item 2 always follows 1, item 4 always follows 3; 5 is the most popular.
    train = _splits({u: [5, 1, 2] if u % 2 else [5, 3, 4] for u in range(1, 9)})
    users = _splits({100: [3, 1], 101: [1, 3]})
    lists = {n: {100: [4, 5, 2], 101: [2, 5, 4]} for n in ("uni100", "pop100")}
    got = baselines.item_to_next(lists, train + users, [1, 2, 3, 4, 5], Counter({5: 8, 1: 4, 3: 4}))
    assert got["uni100"][100] == [2, 4, 5], "last item 1: its follower first, then 3's (weight 1/2)"
    assert got["uni100"][101] == [4, 2, 5]


def test_ease_ranks_what_co_occurs() -> None:
    from rerankdb.eval import baselines

    train = _splits({u: [1, 2] if u % 2 else [3, 4] for u in range(1, 21)} | {99: [1]})
    lists = {n: {99: [4, 3, 2]} for n in ("uni100", "pop100")}
    got = baselines.ease(lists, train, [1, 2, 3, 4], l2=1.0)
    assert got["uni100"][99][0] == 2
