"""``rerankdb eval movielens PATH``: the protocol of movielens.py, through the real system.

Items go into rerankdb.items (text = title + genres) and are embedded by the
worker's refresh; the histories before the validation targets go into
rerankdb.interactions with their real timestamps, are folded, and `rerankdb
train` learns the collaborative vectors from them; then the validation targets
are inserted and folded incrementally (the real-time path).  `rerankdb tune`
holds out each user's newest interaction, the validation target, and chooses
the settings (once per rating weighting, the better kept); every test list is
then reranked once by calling rerankdb.rerank in SQL.  Baselines are scored on
the same lists.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import psycopg

from rerankdb import Client, Item, db, embedded, metrics, migrate, tune_report
from rerankdb.config import Settings
from rerankdb.drain import drain
from rerankdb.eval import baselines, features, report
from rerankdb.eval.movielens import LISTS, Protocol, Rating, build, write_lists
from rerankdb.sequence import SequenceConfig
from rerankdb.train import train
from rerankdb.tune import DAY, TuneReport, TuneSettings, tune
from rerankdb.tune import apply as tune_apply
from rerankdb.user_refresh import rebuild_all

DATABASE = "rerankdb_eval"

# NDCG@10 on (uni100, pop100) measured elsewhere with this protocol (the reference points).
REFERENCE = {
    "random": (0.06, 0.06),
    "popularity": (0.22, 0.06),
    "TF-IDF content": (0.19, 0.16),
    "item-kNN": (0.30, 0.13),
    "EASE": (0.39, 0.18),
}


# How ratings become interaction weights: the application's modelling choice, not
# a rerankdb setting, so the eval tries both (with `rerankdb tune` on each) and
# keeps the better on the tuner's validation objective.  flat: every rating
# weighs 1; linear: rating / 2.5.  (rating - 3 was measured worse and dropped.)
WEIGHTINGS = ("flat", "linear")
COLD_TARGET_MAX = report.COLD_TARGET_MAX
# 0005's shipped defaults (the previous stop's hybrid): no short-term vector.
# Revision 0006's recommend: the text query vector through the text HNSW index alone.
TEXT_ONLY_RECOMMEND = """
select n.item_id
from rerankdb.user_vectors u cross join rerankdb.settings st
cross join lateral rerankdb.nearest(
    rerankdb.blend(u.embedding, u.short_embedding, st.short_weight, st.text_center, st.text_centering),
    null, null, 10, u.user_id) n
where u.user_id = %s
order by n.rank
"""
# What recommend's index approximates: rerank's score over every item, the seen left out.
EXACT_TOP_10 = "select item_id from rerankdb.rerank(%s, %s::bigint[], 10, exclude_seen => true)"
PREVIOUS = TuneSettings(30 * DAY, 600.0, 0.7, 0.0, 1.0, 0.0, 0.0, 0.0, 64)


def weight(weighting: str, rating: float) -> float | None:
    return None if weighting == "flat" else rating / 2.5


def _log(message: str) -> None:
    print(message, flush=True)


def fresh_database(settings: Settings) -> str:
    url = db.create_database(embedded.resolve_url(settings), DATABASE, replace=True)
    migrate.upgrade(url)
    return url


def insert_ratings(conn: psycopg.Connection[Any], ratings: list[Rating], weighting: str) -> None:
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
                cp.write_row(
                    (iid, r.user_id, r.item_id, "view", weight(weighting, r.rating), _ts(r.timestamp))
                )
        with conn.cursor().copy("copy public.eval_ratings from stdin") as cp:
            for iid, r in zip(ids, ratings, strict=True):
                cp.write_row((iid, r.rating))


def _ts(epoch: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S+00", time.gmtime(epoch))


def reweight(conn: psycopg.Connection[Any], weighting: str, dim: int) -> None:
    """Every rating weighted anew, and every user rebuilt with it."""
    conn.execute(
        "update rerankdb.interactions i set weight = case %(weighting)s"
        "  when 'flat' then null when 'linear' then r.rating / 2.5 end"
        " from public.eval_ratings r where r.interaction_id = i.interaction_id",
        {"weighting": weighting},
    )
    rebuild_all(conn, None, 0.0, dim)


def apply(conn: psycopg.Connection[Any], settings: TuneSettings, dim: int) -> None:
    """Write settings as `rerankdb tune` does (rerankdb.tune.apply): a training if the
    collaborative dimension differs from the trained one, a rebuild if a half-life did."""
    tune_apply(conn, settings, encoder=None, context_weight=0.0, dim=dim)


def product_variants(report: TuneReport) -> dict[str, TuneSettings]:
    """rerankdb's own rows: what `rerankdb tune` chose, per objective, and its parts."""

    def best(keep: Any, objective: str = "mean") -> TuneSettings:
        return max(
            (t for t in report.trials if keep(t.settings)), key=lambda t: t.objective(objective)
        ).settings

    def linear_only(s: TuneSettings) -> bool:
        # Without a sequence model (too few users) the tuner kept the weight: it does nothing.
        return s.sequence_weight == 0 or not report.sequence_ndcg

    chosen = report.chosen
    return {
        "rerankdb, tuned (objective mean)": chosen,
        "rerankdb, tuned for uniform": report.best("uniform").settings,
        "rerankdb, tuned for popular": report.best("popular").settings,
        "rerankdb tuned, long-term only (short weights 0)": best(
            lambda s: s.short_weight == 0 and s.collab_short_weight == 0
        ),
        "rerankdb tuned, text only": best(lambda s: s.collab_weight == 0 and linear_only(s)),
        "rerankdb tuned, collaborative only": best(lambda s: s.collab_weight == 1 and linear_only(s)),
        "rerankdb 0005 defaults (previous stop)": PREVIOUS,
    }


# The rows of the sequence space, measured for every seed of its training: the tuned blend,
# the linear spaces alone (the product without it) and the sequence space alone.
SEQUENCE_ROWS = {
    "rerankdb, tuned (objective mean)": None,
    "rerankdb tuned, linear spaces only (sequence weight 0)": 0.0,
    "rerankdb tuned, sequence space alone (sequence weight 1)": 1.0,
}
SEQUENCE_SEEDS = (0, 1, 2)
# Per seed too, where the sequence space's part is small and noisy: the cold-start slice of
# each row, and the first-time visitor ranked by three context items alone.
COLD_SLICE = "cold-start slice"
VISITOR_ROW = "first-time visitor: context alone (tuned)"


def full_catalog(
    conn: psycopg.Connection[Any], proto: Protocol, split_name: str, chosen: TuneSettings, dim: int, seed: int
) -> dict[str, Any]:
    """Top 10 of the whole catalog (items the user has not seen): rerankdb.recommend
    (rerank's score, through the hybrid HNSW index that tune.apply rebuilt for these
    settings), its text index alone (revision 0006's recommend), and popularity."""
    targets = {s.user_id: s.target for s in proto.splits[split_name]}
    seen = {s.user_id: {r.item_id for r in s.history} for s in proto.splits[split_name]}
    pop = proto.popularity[split_name]
    by_pop = sorted(proto.items, key=lambda i: (-pop.get(i, 0), i))
    apply(conn, chosen, dim)
    ranked = {
        u: [r[0] for r in conn.execute("select item_id from rerankdb.recommend(%s, 10)", [u]).fetchall()]
        for u in targets
    }
    everything = db.BigintArray(np.asarray(sorted(proto.items), dtype=np.int64))
    exact = {u: [r[0] for r in conn.execute(EXACT_TOP_10, [u, everything]).fetchall()] for u in targets}
    overlap = float(np.mean([len(set(ranked[u]) & set(exact[u])) / max(len(exact[u]), 1) for u in targets]))
    _log(f"recommend's top 10 holds {overlap:.3f} of the exact top 10 (rerank over the whole catalog)")
    text_only = {u: [r[0] for r in conn.execute(TEXT_ONLY_RECOMMEND, [u]).fetchall()] for u in targets}
    popular = {u: [i for i in by_pop if i not in seen[u]][:10] for u in targets}
    return {
        "rerankdb.recommend (tuned, hybrid)": summarize(evaluate(ranked, targets), seed),
        "rerank over the whole catalog (exact; what recommend's index approximates)": summarize(
            evaluate(exact, targets), seed
        ),
        "text index only (0006's recommend)": summarize(evaluate(text_only, targets), seed),
        "popularity": summarize(evaluate(popular, targets), seed),
    }


def sequence_rows(
    conn: psycopg.Connection[Any],
    proto: Protocol,
    split_name: str,
    chosen: TuneSettings,
    dim: int,
    targets: dict[int, int],
    cold: dict[int, int],
) -> tuple[dict[str, dict[str, dict[int, list[int]]]], dict[str, dict[str, float]]]:
    """SEQUENCE_ROWS with the stored sequence model: (row -> list -> ranked lists, row -> list
    -> NDCG@10, with each row's cold-start slice (the ``cold`` targets) and VISITOR_ROW)."""
    ranked: dict[str, dict[str, dict[int, list[int]]]] = {}
    ndcg: dict[str, dict[str, float]] = {}
    for row, weight in SEQUENCE_ROWS.items():
        settings = chosen if weight is None else replace(chosen, sequence_weight=weight)
        apply(conn, settings, dim)
        ranked[row] = {name: rerank_lists(conn, proto.lists[split_name][name]) for name in LISTS}
        ndcg[row] = {n: float(evaluate(ranked[row][n], targets)["ndcg@10"].mean()) for n in LISTS}
        ndcg[f"{row}, {COLD_SLICE}"] = {
            n: float(evaluate({u: ranked[row][n][u] for u in cold}, cold)["ndcg@10"].mean()) for n in LISTS
        }
    apply(conn, chosen, dim)
    ndcg[VISITOR_ROW] = {
        n: float(features.visitor_context_ndcg(conn, proto, split_name, n).mean()) for n in LISTS
    }
    return ranked, ndcg


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


def baseline_lists(
    proto: Protocol, split_name: str, vectors: dict[int, np.ndarray], ease_l2: float, seed: int
) -> dict[str, dict[str, dict[int, list[int]]]]:
    """Every baseline's ranking of a split's lists (rerankdb/eval/baselines.py)."""
    lists, splits, pop = proto.lists[split_name], proto.splits[split_name], proto.popularity[split_name]
    return {
        "random": baselines.random_order(lists, seed),
        "popularity": baselines.popularity(lists, pop),
        "mean of history": baselines.mean_of_history(lists, splits, vectors),
        f"EASE (L2 {ease_l2:g}, chosen on validation)": baselines.ease(lists, splits, proto.items, ease_l2),
        "item-to-next co-occurrence": baselines.item_to_next(lists, splits, proto.items, pop),
    }


def choose_ease_l2(proto: Protocol, seed: int) -> float:
    """EASE's L2 weight with the best validation NDCG@10 (both lists summed)."""
    targets = {s.user_id: s.target for s in proto.splits["validation"]}

    def score(l2: float) -> float:
        ranked = baselines.ease(proto.lists["validation"], proto.splits["validation"], proto.items, l2)
        return sum(float(evaluate(ranked[n], targets)["ndcg@10"].mean()) for n in LISTS)

    return max(baselines.EASE_L2, key=score)


def item_vectors(conn: psycopg.Connection[Any]) -> dict[int, np.ndarray]:
    rows = conn.execute(
        "select item_id, embedding::vector from rerankdb.item_vectors", binary=True
    ).fetchall()
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
        embedded = drain(conn, encoder, 0.0, dim)
        timings["embed items"] = time.perf_counter() - t0
        _log(f"embedded {embedded.items_embedded:,} items in {timings['embed items']:.1f} s ({encoder.name})")

        # Training: the histories before the validation targets, folded, then the
        # collaborative vectors learned from them.
        t0 = time.perf_counter()
        insert_ratings(conn, [r for s in proto.splits["validation"] for r in s.history], WEIGHTINGS[0])
        drain(conn, encoder, 0.0, dim)
        trained = train(conn, encoder, 0.0, dim, sequence=True)
        timings["train collaborative vectors and the sequence model"] = trained.seconds
        timings["of which the sequence model"] = trained.sequence_seconds
        _log(
            f"trained {trained.dim}-d collaborative vectors for {trained.items:,} items and the sequence "
            f"model ({trained.sequence_epochs} epochs, {trained.sequence_seconds:.0f} s) in "
            f"{trained.seconds:.1f} s (including the rebuild of every user)"
        )
        # Diversity on validation (the state before the validation targets, default
        # settings): where the documented "some diversity" value comes from.
        validation_diversity = features.diversity_sweep(conn, proto, "validation", seed)
        _log(
            "diversity on validation (NDCG@10 / ILS@10, uni100): "
            + ", ".join(
                f"{lam}: {row['uni100']['ndcg@10']['mean']:.3f} / {row['uni100']['ils@10']:.3f}"
                for lam, row in validation_diversity.items()
            )
        )
        # The validation targets arrive and are folded incrementally, as the running
        # worker would (the collaborative vectors stay those trained before them).
        newest = [s.history[-1] for s in proto.splits["test"]]
        insert_ratings(conn, newest, WEIGHTINGS[0])
        folded = drain(conn, encoder, 0.0, dim)
        _log(f"folded the {folded.interactions_folded} validation targets into user vectors (real-time path)")
        # `rerankdb tune` holds out each user's newest interaction: the validation
        # target.  Once per rating weighting; the better one is written.
        tuned: dict[str, TuneReport] = {}
        for weighting in WEIGHTINGS:
            reweight(conn, weighting, dim)
            tuned[weighting] = tune(conn, dry_run=True, dim=dim, seed=seed)
            best_trial = tuned[weighting].best("mean")
            _log(
                f"  tune, {weighting} weights: {best_trial.settings.label}: NDCG@10 uniform "
                f"{best_trial.ndcg['uniform']:.4f} popular {best_trial.ndcg['popular']:.4f} "
                f"({tuned[weighting].seconds:.0f} s)"
            )
        weighting = max(WEIGHTINGS, key=lambda w: tuned[w].best("mean").objective("mean"))
        reweight(conn, weighting, dim)
        final = tune(conn, dim=dim, seed=seed)  # writes the settings, rebuilds every user if needed
        # The nightly training after the validation targets arrived: every row below
        # scores with collaborative vectors and a sequence model learned from the test
        # split's histories.
        nightly = train(conn, None, 0.0, dim, sequence=True)
        timings["nightly training (test histories)"] = nightly.seconds
        timings["of which the sequence model (test histories)"] = nightly.sequence_seconds
        timings["tune on validation"] = time.perf_counter() - t0
        _log(f"chosen by rerankdb tune: {weighting} weights, {final.chosen.label} ({final.seconds:.0f} s)")
        ease_l2 = choose_ease_l2(proto, seed)
        _log(f"EASE L2 weight chosen on validation: {ease_l2:g}")

        # Test, once.
        vectors = item_vectors(conn)
        split_name = "test"
        targets = {s.user_id: s.target for s in proto.splits[split_name]}
        variants = product_variants(final)
        methods: dict[str, dict[str, dict[int, list[int]]]] = {}
        for method, variant in variants.items():
            if method in SEQUENCE_ROWS:
                continue  # measured per seed below
            apply(conn, variant, dim)
            methods[method] = {name: rerank_lists(conn, proto.lists[split_name][name]) for name in LISTS}
        pop = proto.popularity[split_name]
        cold = {u: t for u, t in targets.items() if pop.get(t, 0) <= COLD_TARGET_MAX}
        ranked, first = sequence_rows(conn, proto, split_name, final.chosen, dim, targets, cold)
        methods.update(ranked)
        by_seed = {row: {n: [v[n]] for n in LISTS} for row, v in first.items()}
        methods.update(baseline_lists(proto, split_name, vectors, ease_l2, seed))
        bce, timings["SASRec (BCE) training"] = baselines.sasrec_bce(
            proto.lists[split_name], proto.splits[split_name], proto.items, seed=0
        )
        methods["SASRec, BCE with one sampled negative (its paper's loss; no text)"] = bce
        results: dict[str, Any] = {"test": {}, "test sequence seeds": by_seed}
        for method, by_list in methods.items():
            results["test"][method] = {
                name: summarize(evaluate(by_list[name], targets), seed) for name in LISTS
            }
        # Cold-start slice: targets with few training interactions.
        results["test cold-start"] = {
            "users": len(cold),
            **{
                method: {
                    name: summarize(evaluate({u: methods[method][name][u] for u in cold}, cold), seed)
                    for name in LISTS
                }
                for method in methods
            },
        }
        results["test full catalog"] = full_catalog(conn, proto, split_name, final.chosen, dim, seed)
        apply(conn, final.chosen, dim)
        results["validation diversity"] = validation_diversity
        results["test diversity"] = features.diversity_sweep(conn, proto, split_name, seed)
        results["test context"] = features.context_rows(conn, proto, split_name, seed)
        # The sequence model trained again with other seeds (last: the rows above are seed 0's).
        for k in SEQUENCE_SEEDS[1:]:
            t0 = time.perf_counter()
            train(conn, None, 0.0, dim, sequence=True, sequence_config=SequenceConfig(seed=k))
            timings[f"nightly training, sequence seed {k}"] = time.perf_counter() - t0
            for row, v in sequence_rows(conn, proto, split_name, final.chosen, dim, targets, cold)[1].items():
                for n in LISTS:
                    by_seed[row][n].append(v[n])
            _log(f"sequence seed {k}: " + "; ".join(f"{r}: {by_seed[r]['uni100'][-1]:.4f}" for r in by_seed))
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
        "weighting": weighting,
        "tuning": {w: r.as_json() for w, r in tuned.items()},
        "tuning_trials": {
            w: [{"settings": asdict(t.settings), "ndcg@10": t.ndcg} for t in r.trials]
            for w, r in tuned.items()
        },
        "chosen": {"config": asdict(final.chosen), "label": final.chosen.label},
        "variants": {m: {"config": asdict(v), "label": v.label} for m, v in variants.items()},
        "ease_l2": ease_l2,
        "tune_markdown": tune_report.table(final) + "\n\n" + tune_report.comparison(final),
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
