"""``rerankdb eval movielens PATH``: the protocol of movielens.py, through the real system.

Items go into rerankdb.items (text = title + genres) and are embedded by the
worker's refresh; histories go into rerankdb.interactions with their real
timestamps and are folded by the worker's refresh; every candidate list is
reranked by calling rerankdb.rerank in SQL.  Half-life and rating weighting
are tuned on the validation split; the test split is reported once, after
the validation targets have been inserted and folded incrementally (the
real-time path).  Baselines are scored on the same lists.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import psycopg

from rerankdb import Client, Item, db, embedded, migrate
from rerankdb.config import Settings
from rerankdb.drain import drain
from rerankdb.eval import metrics, report
from rerankdb.eval.movielens import LISTS, Protocol, Rating, build, write_lists
from rerankdb.fold import FoldParams
from rerankdb.train import train
from rerankdb.user_refresh import rebuild_all

DATABASE = "rerankdb_eval"
DAY = 86400.0

# NDCG@10 on (uni100, pop100) measured elsewhere with this protocol (the reference points).
REFERENCE = {
    "random": (0.06, 0.06),
    "popularity": (0.22, 0.06),
    "TF-IDF content": (0.19, 0.16),
    "item-kNN": (0.30, 0.13),
    "EASE": (0.39, 0.18),
}


@dataclass(frozen=True)
class Config:
    half_life_days: float | None
    weighting: str  # flat: every rating weighs 1; linear: rating / 2.5; centered: rating - 3
    collab_weight: float = 0.0  # 0: text only; 1: collaborative only (text where none)
    text_centering: float = 1.0  # share of the average user vector subtracted (rerankdb.settings)
    collab_centering: float = 0.0
    collab_shrink: float = 0.0  # an item's collab weight: collab_weight * support / (support + shrink)

    def weight(self, rating: float) -> float | None:
        if self.weighting == "flat":
            return None  # the kind's weight, 1
        if self.weighting == "linear":
            return rating / 2.5
        return rating - 3.0

    @property
    def label(self) -> str:
        hl = "no decay" if self.half_life_days is None else f"half-life {self.half_life_days:g} d"
        return (
            f"{hl}, {self.weighting} weights, collab weight {self.collab_weight:g}, "
            f"centering text {self.text_centering:g} / collab {self.collab_centering:g}"
            + (f", shrink {self.collab_shrink:g}" if self.collab_shrink else "")
        )


# Half-life and weighting need a rebuild each; the blend settings are read by
# rerank at query time, so they are tuned inside each rebuild.  The choice:
# best NDCG@10 on validation (see choose()).  The last blends (full
# collaborative centering, rare items leaning on their text) are there for
# the niche setting (see choose_niche()).  (Centered rating weights,
# rating - 3, were measured worse on validation and left out.)
FOLDS = [(h, w) for h in (None, 30.0, 180.0, 730.0) for w in ("flat", "linear")]
BLENDS = (
    [(0.0, tc, 0.0) for tc in (0.0, 1.0)]
    + [(cw, 1.0, cc) for cw in (0.6, 0.7, 0.8, 1.0) for cc in (0.0, 0.3, 0.6, 1.0)]
    + [(cw, 1.0, 1.0, shrink) for cw in (0.5, 0.7) for shrink in (3.0, 10.0)]
)
GRID = [Config(h, w, *blend) for h, w in FOLDS for blend in BLENDS]
SCORED_WEIGHTS = (0.25, 0.5, 0.75, 0.9)  # rerank_scored's share of personalization
COLD_TARGET_MAX = report.COLD_TARGET_MAX


def _log(message: str) -> None:
    print(message, flush=True)


def fresh_database(settings: Settings) -> str:
    url = db.create_database(embedded.resolve_url(settings), DATABASE, replace=True)
    migrate.upgrade(url)
    return url


def insert_ratings(conn: psycopg.Connection[Any], ratings: list[Rating], config: Config) -> None:
    """Ratings as interactions with their real timestamps; keeps each rating for re-weighting."""
    conn.execute(
        "create table if not exists public.eval_ratings (interaction_id bigint primary key, rating real)"
    )
    with conn.transaction():
        first = conn.execute("select nextval('rerankdb.interactions_interaction_id_seq')").fetchone()[0]  # type: ignore[index]
        ids = range(first, first + len(ratings))
        conn.execute("select setval('rerankdb.interactions_interaction_id_seq', %s)", [first + len(ratings)])
        with conn.cursor().copy(
            "copy rerankdb.interactions (interaction_id, user_id, item_id, kind, weight, occurred_at)"
            " from stdin"
        ) as cp:
            for iid, r in zip(ids, ratings, strict=True):
                cp.write_row((iid, r.user_id, r.item_id, "view", config.weight(r.rating), _ts(r.timestamp)))
        with conn.cursor().copy("copy public.eval_ratings from stdin") as cp:
            for iid, r in zip(ids, ratings, strict=True):
                cp.write_row((iid, r.rating))


def _ts(epoch: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S+00", time.gmtime(epoch))


def reweight(conn: psycopg.Connection[Any], config: Config) -> None:
    conn.execute(
        "update rerankdb.interactions i set weight = case %(weighting)s"
        "  when 'flat' then null when 'linear' then r.rating / 2.5 when 'centered' then r.rating - 3 end"
        " from public.eval_ratings r where r.interaction_id = i.interaction_id",
        {"weighting": config.weighting},
    )


def text_only(config: Config) -> Config:
    """The same folds and text centering, no collaborative part."""
    return replace(config, collab_weight=0.0, collab_centering=0.0, collab_shrink=0.0)


def choose(grid: list[dict[str, Any]]) -> Config:
    """The best validation NDCG@10, both lists summed."""
    return Config(**max(grid, key=lambda g: sum(g["ndcg@10"].values()))["config"])


def choose_niche(grid: list[dict[str, Any]], best: Config) -> Config | None:
    """The niche setting: best's folds, the blend with the best validation NDCG@10
    among those not worse than text only on the validation cold-start slice
    (both lists); None if no blend qualifies.

    Rare items are what popular-leaning collaborative scores push down; the
    niche setting shows what keeping them costs overall (rerankdb/eval/README.md,
    "Popular or niche").
    """
    same_folds = [
        g
        for g in grid
        if (g["config"]["half_life_days"], g["config"]["weighting"]) == (best.half_life_days, best.weighting)
    ]
    ref = next(g for g in same_folds if Config(**g["config"]) == text_only(best))["cold ndcg@10"]
    ok = [
        g
        for g in same_folds
        if g["config"]["collab_weight"] > 0 and all(g["cold ndcg@10"][n] >= ref[n] for n in LISTS)
    ]
    if not ok:
        return None
    return Config(**max(ok, key=lambda g: sum(g["ndcg@10"].values()))["config"])


def set_blend(conn: psycopg.Connection[Any], config: Config) -> None:
    conn.execute(
        "update rerankdb.settings set collab_weight = %s, collab_shrink = %s,"
        " text_centering = %s, collab_centering = %s",
        [config.collab_weight, config.collab_shrink, config.text_centering, config.collab_centering],
    )


def product_variants(best: Config, niche: Config | None) -> dict[str, Config]:
    """rerankdb's own rows in the results: the chosen hybrid and its parts."""
    variants = {"rerankdb hybrid": best}
    if niche is not None:
        variants["rerankdb hybrid, niche setting"] = niche
    text = text_only(best)
    variants["rerankdb text only"] = text
    variants["rerankdb text only, uncentered (0003)"] = replace(text, text_centering=0.0)
    variants["rerankdb collaborative only"] = replace(best, collab_weight=1.0, collab_shrink=0.0)
    return variants


def rerank_scored_lists(
    conn: psycopg.Connection[Any], lists: dict[int, list[int]], pop: dict[int, int], weight: float
) -> dict[int, list[int]]:
    """rerankdb.rerank_scored with a popularity 'retriever' score, log(1 + training count)."""
    out = {}
    for user, cands in lists.items():
        base = [float(np.log1p(pop.get(c, 0))) for c in cands]
        rows = conn.execute(
            "select item_id from rerankdb.rerank_scored(%s, %s::bigint[], %s::float8[], %s)",
            [user, db.BigintArray(np.array(cands)), base, weight],
        ).fetchall()
        out[user] = [r[0] for r in rows]
    return out


def full_catalog(
    conn: psycopg.Connection[Any], proto: Protocol, split_name: str, best: Config, seed: int
) -> dict[str, Any]:
    """Top 10 of the whole catalog (items the user has not seen): rerankdb.recommend
    (text, through the HNSW index) centered and plain, against popularity."""
    targets = {s.user_id: s.target for s in proto.splits[split_name]}
    seen = {s.user_id: {r.item_id for r in s.history} for s in proto.splits[split_name]}
    pop = proto.popularity[split_name]
    by_pop = sorted(proto.items, key=lambda i: (-pop.get(i, 0), i))
    out: dict[str, Any] = {}
    for method, share in (
        ("rerankdb.recommend", best.text_centering),
        ("rerankdb.recommend, uncentered (0003)", 0.0),
    ):
        set_blend(conn, replace(best, text_centering=share))
        ranked = {
            u: [r[0] for r in conn.execute("select item_id from rerankdb.recommend(%s, 10)", [u]).fetchall()]
            for u in targets
        }
        out[method] = summarize(evaluate(ranked, targets), seed)
    set_blend(conn, best)
    popular = {u: [i for i in by_pop if i not in seen[u]][:10] for u in targets}
    out["popularity"] = summarize(evaluate(popular, targets), seed)
    return out


def rerank_lists(conn: psycopg.Connection[Any], lists: dict[int, list[int]]) -> dict[int, list[int]]:
    out = {}
    for user, cands in lists.items():
        rows = conn.execute(
            "select item_id from rerankdb.rerank(%s, %s::bigint[])", [user, db.BigintArray(np.array(cands))]
        ).fetchall()
        out[user] = [r[0] for r in rows]
    return out


def evaluate(ranked: dict[int, list[int]], targets: dict[int, int]) -> dict[str, np.ndarray]:
    users = sorted(ranked)
    return metrics.per_user([metrics.target_rank(ranked[u], targets[u]) for u in users])


def baselines(
    proto: Protocol, split_name: str, vectors: dict[int, np.ndarray], seed: int
) -> dict[str, dict[str, dict[int, list[int]]]]:
    """Random, popularity, and the plain mean of history embeddings, on the same lists."""
    rng = np.random.default_rng(seed)
    pop = proto.popularity[split_name]
    history = {s.user_id: [r.item_id for r in s.history] for s in proto.splits[split_name]}
    out: dict[str, dict[str, dict[int, list[int]]]] = {"random": {}, "popularity": {}, "mean of history": {}}
    for list_name in LISTS:
        lists = proto.lists[split_name][list_name]
        out["random"][list_name] = {u: [int(x) for x in rng.permutation(c)] for u, c in lists.items()}
        out["popularity"][list_name] = {u: sorted(c, key=lambda i: -pop.get(i, 0)) for u, c in lists.items()}
        ranked = {}
        for u, cands in lists.items():
            seen = [vectors[i] for i in history[u] if i in vectors]
            if not seen:
                ranked[u] = list(cands)
                continue
            mean = np.mean(seen, axis=0)
            scores = [float(vectors[c] @ mean) if c in vectors else -np.inf for c in cands]
            ranked[u] = [c for _, c in sorted(zip(scores, cands, strict=True), key=lambda t: -t[0])]
        out["mean of history"][list_name] = ranked
    return out


def item_vectors(conn: psycopg.Connection[Any]) -> dict[int, np.ndarray]:
    rows = conn.execute("select item_id, embedding from rerankdb.item_vectors", binary=True).fetchall()
    return {i: np.asarray(v.to_numpy(), dtype=np.float64) for i, v in rows}


def summarize(per_user: dict[str, np.ndarray], seed: int) -> dict[str, dict[str, float]]:
    out = {}
    for name, values in per_user.items():
        mean, low, high = metrics.bootstrap_ci(values, seed=seed)
        out[name] = {"mean": mean, "ci_low": low, "ci_high": high}
    return out


def run(
    path: Path,
    out: Path,
    *,
    seed: int = 42,
    backend: str = "fp32",
    settings: Settings | None = None,
    collab_dim: int | None = None,
) -> dict[str, Any]:
    from rerankdb.encoder import TransformerEncoder

    settings = settings or Settings.from_env()
    t_start = time.perf_counter()
    proto = build(path, seed)
    sums = write_lists(proto.lists, out / "lists")
    n_users = len(proto.splits["test"])
    _log(
        f"protocol: {len(proto.ratings):,} ratings after 5-core, {n_users} users, {len(proto.items):,} items; "
        f"lists written to {out / 'lists'} (SHA256SUMS beside them)"
    )
    url = fresh_database(settings)
    encoder = TransformerEncoder(backend=backend)
    with Client(url) as client:
        client.upsert_items(Item(i, proto.data.text(i)) for i in proto.items)
        dim = client.dimension
    conn = db.connect(url, autocommit=True)
    if collab_dim is not None:
        conn.execute("update rerankdb.settings set collab_dim = %s", [collab_dim])
    timings: dict[str, float] = {}
    try:
        t0 = time.perf_counter()
        embedded = drain(conn, encoder, FoldParams(None, 0.0), dim)
        timings["embed items"] = time.perf_counter() - t0
        _log(f"embedded {embedded.items_embedded:,} items in {timings['embed items']:.1f} s ({encoder.name})")

        # Validation: histories before the validation targets; train and tune on them.
        t0 = time.perf_counter()
        insert_ratings(conn, [r for s in proto.splits["validation"] for r in s.history], GRID[0])
        drain(conn, encoder, FoldParams(None, 0.0), dim)
        trained = train(conn, encoder, FoldParams(None, 0.0), dim)
        timings["train collaborative vectors"] = trained.seconds
        _log(
            f"trained {trained.dim}-d collaborative vectors for {trained.items:,} items "
            f"in {trained.seconds:.1f} s (including the rebuild of every user)"
        )
        val_targets = {s.user_id: s.target for s in proto.splits["validation"]}
        grid_results: list[dict[str, Any]] = []
        val_pop = proto.popularity["validation"]
        val_cold = sorted(u for u, t in val_targets.items() if val_pop.get(t, 0) <= COLD_TARGET_MAX)
        for half_life, weighting in FOLDS:
            reweight(conn, Config(half_life, weighting))
            rebuild_all(conn, encoder, FoldParams.from_days(half_life, 0.0), dim)
            for blend in BLENDS:
                config = Config(half_life, weighting, *blend)
                set_blend(conn, config)
                scores, cold_scores = {}, {}
                for name in LISTS:
                    ranked = rerank_lists(conn, proto.lists["validation"][name])
                    ndcg = evaluate(ranked, val_targets)["ndcg@10"]
                    users = sorted(ranked)
                    scores[name] = float(ndcg.mean())
                    cold_scores[name] = (
                        float(np.mean([ndcg[users.index(u)] for u in val_cold])) if val_cold else 0.0
                    )
                grid_results.append(
                    {
                        "config": asdict(config),
                        "label": config.label,
                        "ndcg@10": scores,
                        "cold ndcg@10": cold_scores,
                    }
                )
            top = max(grid_results[-len(BLENDS) :], key=lambda g: sum(g["ndcg@10"].values()))
            _log(
                f"  validation {top['label']:<58} NDCG@10 uni100 {top['ndcg@10']['uni100']:.4f}"
                f"  pop100 {top['ndcg@10']['pop100']:.4f} (best blend for this fold)"
            )
        best = choose(grid_results)
        niche = choose_niche(grid_results, best)
        # The retriever-score blend (rerank_scored), its weight tuned on validation too.
        reweight(conn, best)
        rebuild_all(conn, encoder, FoldParams.from_days(best.half_life_days, 0.0), dim)
        set_blend(conn, best)
        scored_grid = {}
        for weight in SCORED_WEIGHTS:
            scored_grid[weight] = sum(
                float(
                    evaluate(
                        rerank_scored_lists(
                            conn, proto.lists["validation"][name], proto.popularity["validation"], weight
                        ),
                        val_targets,
                    )["ndcg@10"].mean()
                )
                for name in LISTS
            )
        scored_weight = max(scored_grid, key=lambda w: scored_grid[w])
        _log(
            f"rerank_scored with a popularity score: personalization weight {scored_weight:g} chosen on validation"
        )
        timings["tune on validation"] = time.perf_counter() - t0
        _log(f"chosen on validation: {best.label}")
        _log(f"niche setting chosen on validation: {niche.label if niche else 'none qualifies'}")

        vectors = item_vectors(conn)
        results: dict[str, Any] = {"validation": {}, "test": {}}
        for split_name in ("validation", "test"):
            if split_name == "test":
                # The validation targets become history: insert and fold them
                # incrementally, as the running worker would.
                t0 = time.perf_counter()
                reweight(conn, best)
                rebuild_all(conn, encoder, FoldParams.from_days(best.half_life_days, 0.0), dim)
                newest = [s.history[-1] for s in proto.splits["test"]]
                insert_ratings(conn, newest, best)
                folded = drain(conn, encoder, FoldParams.from_days(best.half_life_days, 0.0), dim)
                timings["fold validation targets"] = time.perf_counter() - t0
                _log(
                    f"folded the {folded.interactions_folded} validation targets into user vectors (real-time path)"
                )
            else:
                reweight(conn, best)
                rebuild_all(conn, encoder, FoldParams.from_days(best.half_life_days, 0.0), dim)
            targets = {s.user_id: s.target for s in proto.splits[split_name]}
            methods: dict[str, dict[str, dict[int, list[int]]]] = {}
            variants = product_variants(best, niche)
            for method, config in variants.items():
                set_blend(conn, config)
                methods[method] = {name: rerank_lists(conn, proto.lists[split_name][name]) for name in LISTS}
            set_blend(conn, best)
            methods[f"rerankdb + popularity score (rerank_scored, weight {scored_weight:g})"] = {
                name: rerank_scored_lists(
                    conn, proto.lists[split_name][name], proto.popularity[split_name], scored_weight
                )
                for name in LISTS
            }
            methods.update(baselines(proto, split_name, vectors, seed))
            for method, by_list in methods.items():
                results[split_name][method] = {
                    name: summarize(evaluate(by_list[name], targets), seed) for name in LISTS
                }
            # Cold-start slice: targets with few training interactions.
            pop = proto.popularity[split_name]
            cold = {u: t for u, t in targets.items() if pop.get(t, 0) <= COLD_TARGET_MAX}
            results[f"{split_name} cold-start"] = {
                "users": len(cold),
                **{
                    method: {
                        name: summarize(evaluate({u: methods[method][name][u] for u in cold}, cold), seed)
                        for name in LISTS
                    }
                    for method in variants
                },
            }
            results[f"{split_name} full catalog"] = full_catalog(conn, proto, split_name, best, seed)
    finally:
        conn.close()
    timings["total"] = time.perf_counter() - t_start
    summary = {
        "dataset": str(path),
        "seed": seed,
        "collab_dim": trained.dim,
        "encoder": encoder.name,
        "users": n_users,
        "items": len(proto.items),
        "ratings_after_5core": len(proto.ratings),
        "lists_sha256": sums,
        "tuning": grid_results,
        "chosen": {"config": asdict(best), "label": best.label},
        "niche": None if niche is None else {"config": asdict(niche), "label": niche.label},
        "rerank_scored_weight": scored_weight,
        "results": results,
        "reference_ndcg@10": {k: {"uni100": v[0], "pop100": v[1]} for k, v in REFERENCE.items()},
        "seconds": timings,
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(summary, indent=2) + "\n")
    table = report.markdown(summary)
    (out / "results.md").write_text(table + "\n")
    report.chart(summary, out / "ndcg10.png")
    _log("\n" + table)
    _log(
        f"\nwrote {out / 'results.json'}, {out / 'results.md'}, {out / 'ndcg10.png'} in {timings['total']:.0f} s"
    )
    return summary
