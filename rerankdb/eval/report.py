"""The eval's report: a markdown table and a bar chart of the test results."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from rerankdb.eval.movielens import LISTS

COLD_TARGET_MAX = 10  # the cold-start slice: targets with at most this many training interactions


def _ci(m: dict[str, float]) -> str:
    """A mean with its bootstrap interval: 0.415 [0.386, 0.445]."""
    return f"{m['mean']:.3f} [{m['ci_low']:.3f}, {m['ci_high']:.3f}]"


def markdown(summary: dict[str, Any]) -> str:
    test = summary["results"]["test"]
    lines = [
        f"Test split, {summary['users']} users, 95% bootstrap intervals over users; "
        f"rerankdb tuned by `rerankdb tune` on the validation targets ({summary['weighting']} rating "
        f"weights): {summary['chosen']['label']}.",
        "",
        "| method | list | NDCG@10 | Recall@10 | MRR |",
        "|---|---|---|---|---|",
    ]
    for method, by_list in test.items():
        for name in LISTS:
            m = by_list[name]
            cells = [_ci(m[k]) for k in ("ndcg@10", "recall@10", "mrr")]
            lines.append(f"| {method} | {name} | " + " | ".join(cells) + " |")
    seeds = summary["results"].get("test sequence seeds")
    if seeds:
        lines += [
            "",
            "The sequence model trained with each seed (the rows above are seed 0's), NDCG@10: "
            "mean over seeds [lowest, highest], then each seed:",
            "",
            "| method | uni100 | pop100 | uni100 per seed | pop100 per seed |",
            "|---|---|---|---|---|",
        ]
        for method, by_list in seeds.items():
            spread = [
                f"{np.mean(by_list[n]):.4f} [{min(by_list[n]):.4f}, {max(by_list[n]):.4f}]" for n in LISTS
            ]
            each = [", ".join(f"{v:.4f}" for v in by_list[n]) for n in LISTS]
            lines.append(f"| {method} | " + " | ".join(spread + each) + " |")
    timings = summary.get("seconds")
    if timings:
        lines += ["", "Time (seconds, this machine):", ""]
        lines += [f"- {k}: {v:.0f}" for k, v in timings.items()]
    cold = summary["results"].get("test cold-start")
    if cold:
        lines += [
            "",
            f"Cold-start slice: the {cold['users']} test targets with at most {COLD_TARGET_MAX} "
            "training interactions, NDCG@10:",
            "",
            "| method | uni100 | pop100 |",
            "|---|---|---|",
        ]
        for method in [m for m in cold if m != "users"]:
            cells = [_ci(cold[method][n]["ndcg@10"]) for n in LISTS]
            lines.append(f"| {method} | " + " | ".join(cells) + " |")
    full = summary["results"].get("test full catalog")
    if full:
        lines += [
            "",
            f"Full catalog: the top 10 of all {summary['items']:,} items the user has not seen, test targets:",
            "",
            "| method | NDCG@10 | Recall@10 |",
            "|---|---|---|",
        ]
        for method, m in full.items():
            cells = [_ci(m[k]) for k in ("ndcg@10", "recall@10")]
            lines.append(f"| {method} | " + " | ".join(cells) + " |")
    for split in ("validation", "test"):
        sweep = summary["results"].get(f"{split} diversity")
        if not sweep:
            continue
        lines += [
            "",
            f"Diversity ({split} split): NDCG@10 and intra-list similarity of the top 10 (ILS@10, "
            "rerankdb.diversify's similarity); change against diversity 0:",
            "",
            "| diversity | " + " | ".join(f"{n} NDCG@10 | {n} ILS@10" for n in LISTS) + " |",
            "|---|" + "---|---|" * len(LISTS),
        ]
        base = sweep["0"]
        for lam, row in sweep.items():
            cells = []
            for n in LISTS:
                nd, ils = row[n]["ndcg@10"]["mean"], row[n]["ils@10"]
                b_nd, b_ils = base[n]["ndcg@10"]["mean"], base[n]["ils@10"]
                cells.append(f"{_ci(row[n]['ndcg@10'])} ({nd / b_nd - 1:+.1%})")
                cells.append(f"{ils:.3f} ({ils / b_ils - 1:+.1%})")
            lines.append(f"| {lam} | " + " | ".join(cells) + " |")
    context = summary["results"].get("test context")
    if context:
        lines += [
            "",
            "Context items (test split): each user's newest history items as `context_items`, NDCG@10:",
            "",
            "| method | uni100 | pop100 |",
            "|---|---|---|",
        ]
        for method, by_list in context.items():
            lines.append(f"| {method} | " + " | ".join(_ci(by_list[n]) for n in LISTS) + " |")
    if summary.get("tune_markdown"):
        lines += [
            "",
            "`rerankdb tune` on the validation targets (its own candidate lists from the catalog):",
            "",
        ]
        lines += [summary["tune_markdown"]]
    lines += ["", "The product's rows, as chosen from the tuner's table:", ""]
    lines += [f"- {m}: {v['label']}" for m, v in summary.get("variants", {}).items()]
    lines += ["", "Reference NDCG@10 measured elsewhere with this protocol (uni100 / pop100):", ""]
    lines += [
        f"- {k}: {v['uni100']:.2f} / {v['pop100']:.2f}" for k, v in summary["reference_ndcg@10"].items()
    ]
    return "\n".join(lines)


def chart(summary: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    test = summary["results"]["test"]
    methods = list(test)
    x = np.arange(len(methods))
    fig, ax = plt.subplots(figsize=(11, 4.5))
    for k, name in enumerate(LISTS):
        means = [test[m][name]["ndcg@10"]["mean"] for m in methods]
        low = [means[j] - test[m][name]["ndcg@10"]["ci_low"] for j, m in enumerate(methods)]
        high = [test[m][name]["ndcg@10"]["ci_high"] - means[j] for j, m in enumerate(methods)]
        ax.bar(x + (k - 0.5) * 0.38, means, 0.38, yerr=[low, high], capsize=3, label=name)
    ax.set_xticks(x, [m.replace("rerankdb ", "rerankdb\n") for m in methods], fontsize=8)
    ax.set_ylabel("NDCG@10 (test)")
    ax.set_title(f"MovieLens, {summary['users']} users, 95% bootstrap intervals")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
