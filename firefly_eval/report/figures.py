"""The report's PNG figures (matplotlib, Agg backend, English labels: no CJK font is assumed).

Builders return a `Figure` whose artists hold exactly the numbers from the result files (tests read
them back); `save` writes the PNG atomically.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
from matplotlib.figure import Figure  # noqa: E402

from firefly_eval.report.collect import CMMLU_CATEGORIES, LEADERBOARD_TASKS, BenchResult, TrainRun  # noqa: E402
from firefly_eval.report.tables import TASK_NAMES  # noqa: E402
from firefly_train.io import atomic_open  # noqa: E402

COLORS = {"win": "#4c9a2a", "tie": "#b0b0b0", "loss": "#c0392b"}


def loss_curves(runs: list[TrainRun]) -> Figure:
    """One panel per run (steps restart in each run): training loss against step."""
    fig = Figure(figsize=(5 * len(runs), 3.6), dpi=100, layout="constrained")
    for ax, run in zip(fig.subplots(1, len(runs), squeeze=False)[0], runs):
        ax.plot([r["step"] for r in run.loss], [r["loss"] for r in run.loss], marker=".", label=run.name)
        ax.set_title(f"{run.name} ({run.info['command']})")
        ax.set_xlabel("step")
        ax.set_ylabel("training loss")
        ax.grid(alpha=0.3)
    return fig


def _stacked(ax, labels: list[str], counts: list[dict]) -> None:
    """Horizontal bars of win/tie/loss as percentages of each row's total."""
    left = [0.0] * len(labels)
    for key in ("win", "tie", "loss"):
        widths = [100 * c[key] / max(1, c["win"] + c["tie"] + c["loss"]) for c in counts]
        ax.barh(labels, widths, left=left, color=COLORS[key], label=key)
        left = [a + b for a, b in zip(left, widths)]
    ax.set_xlim(0, 100)
    ax.set_xlabel("% of judgements")
    ax.invert_yaxis()
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")


def win_tie_loss(tally: dict) -> Figure:
    """One stacked bar per pair: A's wins, ties and losses against B."""
    pairs = tally["pairs"]
    fig = Figure(figsize=(7, 1.2 + 0.6 * len(pairs)), dpi=100, layout="constrained")
    ax = fig.subplots()
    _stacked(ax, [f"{p['model_a']} vs {p['model_b']}" for p in pairs], pairs)
    ax.set_title("Human evaluation: win / tie / loss of A against B")
    return fig


def per_task(tally: dict) -> Figure | None:
    """One panel per pair with per-task breakdown: stacked win/tie/loss per task."""
    pairs = [p for p in tally["pairs"] if p.get("per_task")]
    if not pairs:
        return None
    tallest = max(len(p["per_task"]) for p in pairs)
    fig = Figure(figsize=(7, (1.2 + 0.4 * tallest) * len(pairs)), dpi=100, layout="constrained")
    for ax, p in zip(fig.subplots(len(pairs), 1, squeeze=False)[:, 0], pairs):
        tasks = sorted(p["per_task"])
        _stacked(ax, tasks, [p["per_task"][t] for t in tasks])
        ax.set_title(f"{p['model_a']} vs {p['model_b']} by task")
    return fig


def benchmarks(cmmlu: list[BenchResult], leaderboard: list[BenchResult]) -> Figure | None:
    """Grouped bars per model: CMMLU categories + average, and the leaderboard tasks + average."""
    panels = [(cmmlu, "CMMLU", CMMLU_CATEGORIES, lambda r, k: r.data["categories"].get(k)),
              (leaderboard, "Open LLM Leaderboard tasks", LEADERBOARD_TASKS,
               lambda r, k: (r.data["tasks"].get(k) or {}).get("value"))]
    panels = [p for p in panels if p[0]]
    if not panels:
        return None
    fig = Figure(figsize=(7 * len(panels), 3.8), dpi=100, layout="constrained")
    for ax, (results, title, keys, get) in zip(fig.subplots(1, len(panels), squeeze=False)[0], panels):
        names = [TASK_NAMES.get(k, k) for k in keys] + ["Average"]
        width = 0.8 / len(results)
        for i, r in enumerate(results):
            values = [get(r, k) for k in keys] + [r.data["average"]]
            xs = [j + (i - (len(results) - 1) / 2) * width for j in range(len(names))]
            ax.bar([x for x, v in zip(xs, values) if v is not None], [v for v in values if v is not None],
                   width, label=r.label)
        ax.set_xticks(range(len(names)), names, rotation=20, ha="right")
        ax.set_ylabel("accuracy (%)")
        ax.set_ylim(0, 100)
        ax.set_title(title)
        ax.legend(fontsize="small")
        ax.grid(axis="y", alpha=0.3)
    return fig


def save(fig: Figure, path: Path) -> None:
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png")
