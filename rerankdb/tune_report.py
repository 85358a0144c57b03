"""What ``rerankdb tune`` prints and plots: the table of what it tried, the choice beside the
current settings with bootstrap intervals."""

from __future__ import annotations

from pathlib import Path

from rerankdb.tune import CONTEXT_ITEMS, LISTS, Trial, TuneReport, TuneSettings

TOP = 10


def _row(label: str, trial: Trial, objective: str) -> str:
    n = trial.ndcg
    return f"| {label} | {n['uniform']:.4f} | {n['popular']:.4f} | {trial.objective(objective):.4f} |"


def table(report: TuneReport) -> str:
    """Markdown: the best blend per pair of half-lives, then the top settings overall."""
    head = f"| settings | NDCG@10 uniform | NDCG@10 popular | objective ({report.objective}) |"
    lines = [
        f"Tried {len(report.trials):,} settings on {report.users:,} held-out users "
        f"({report.interactions:,} interactions read) in {report.seconds:.1f} s.",
        "",
        "Best blend for each pair of half-lives:",
        "",
        head,
        "|---|---|---|---|",
    ]
    best: dict[tuple[float | None, float], Trial] = {}
    for t in report.trials:
        key = t.settings.half_lives
        if key not in best or t.objective(report.objective) > best[key].objective(report.objective):
            best[key] = t
    lines += [_row(t.settings.label, t, report.objective) for t in best.values()]
    ranked = sorted(report.trials, key=lambda t: -t.objective(report.objective))[:TOP]
    lines += ["", f"Top {len(ranked)} overall:", "", head, "|---|---|---|---|"]
    lines += [_row(t.settings.label, t, report.objective) for t in ranked]
    return "\n".join(lines)


def comparison(report: TuneReport) -> str:
    """The chosen settings against the current ones, NDCG@10 with 95% bootstrap intervals."""
    lines = [
        "| | settings | NDCG@10 uniform | NDCG@10 popular |",
        "|---|---|---|---|",
    ]
    for name, settings, ndcg in (
        ("current", report.current, report.current_ndcg),
        ("chosen", report.chosen, report.chosen_ndcg),
    ):
        lines.append(f"| {name} | {settings.label} | " + " | ".join(str(ndcg[n]) for n in LISTS) + " |")
    if report.context_ndcg:
        lines += [
            "",
            f"context_items_weight, at the chosen settings, each user's newest {CONTEXT_ITEMS} history items "
            f"as the context (current {report.current_context_weight:g}, chosen "
            f"{report.chosen_context_weight:g}):",
            "",
            "| context_items_weight | NDCG@10 uniform | NDCG@10 popular |",
            "|---|---|---|",
        ]
        for c, by_list in report.context_ndcg.items():
            mark = " (chosen)" if c == report.chosen_context_weight else ""
            lines.append(f"| {c:g}{mark} | " + " | ".join(f"{by_list[n]:.4f}" for n in LISTS) + " |")
    if report.sequence_ndcg:
        lines += [
            "",
            f"sequence_weight, at the chosen other settings (the sequence model trained on the held-out "
            f"log in {report.sequence_seconds:.0f} s; current {report.current.sequence_weight:g}, chosen "
            f"{report.chosen.sequence_weight:g}):",
            "",
            "| sequence_weight | NDCG@10 uniform | NDCG@10 popular |",
            "|---|---|---|",
        ]
        for w, by_list in report.sequence_ndcg.items():
            mark = " (chosen)" if w == report.chosen.sequence_weight else ""
            lines.append(f"| {w:g}{mark} | " + " | ".join(f"{by_list[n]:.4f}" for n in LISTS) + " |")
    return "\n".join(lines)


def outcome(report: TuneReport) -> str:
    if not report.written:
        return "dry run: nothing written"
    if report.chosen == report.current and report.chosen_context_weight == report.current_context_weight:
        return "the current settings are the best found: rerankdb.settings unchanged (tuned_at updated)"
    done = "written to rerankdb.settings"
    if report.retrained:
        return (
            done
            + f"; {report.chosen.collab_dim}-d collaborative vectors trained, every user rebuilt (one transaction)"
        )
    if report.rebuilt:
        return done + "; every user rebuilt with the new half-lives in the same transaction"
    if report.rebuild_pending:
        return done + "; the half-lives changed: the worker rebuilds every user at its next drain"
    return done + " (blend weights only: no rebuild needed)"


def plot(report: TuneReport, path: Path) -> None:
    """Every trial as a point (NDCG@10 uniform, popular); the current and chosen settings marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 5))
    ax.scatter(
        [t.ndcg["uniform"] for t in report.trials],
        [t.ndcg["popular"] for t in report.trials],
        s=4,
        alpha=0.3,
        label=f"{len(report.trials):,} settings tried",
    )
    for name, settings, marker in (("current", report.current, "s"), ("chosen", report.chosen, "*")):
        ndcg = report.current_ndcg if name == "current" else report.chosen_ndcg
        ax.scatter(
            [ndcg["uniform"].mean],
            [ndcg["popular"].mean],
            s=160,
            marker=marker,
            label=f"{name}: {_short(settings)}",
        )
    ax.set_xlabel("NDCG@10, uniformly sampled candidates")
    ax.set_ylabel("NDCG@10, popularity-sampled candidates")
    ax.set_title(f"rerankdb tune: {report.users:,} held-out users, objective {report.objective}")
    ax.legend(loc="lower right", fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _short(s: TuneSettings) -> str:
    return s.label if len(s.label) < 60 else s.label[:57] + "..."
