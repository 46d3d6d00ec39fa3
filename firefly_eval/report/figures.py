"""The report's PNG figures (matplotlib, Agg backend).

Builders return a `Figure` whose artists hold exactly the numbers from the result files (tests read
them back); `save` writes the PNG atomically. Model, run and task names may be Chinese: `font_context` uses
an installed font with Chinese glyphs (`cjk_font`, e.g. Debian's fonts-wqy-microhei) as the fallback of the
default font; without one, `Labels` numbers each Chinese label ([1], [2], ...) and the report lists them.
"""
from __future__ import annotations

import contextlib
import functools
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
from matplotlib.figure import Figure  # noqa: E402

from firefly_core.io import atomic_open  # noqa: E402
from firefly_eval.benchmarks import CMMLU_CATEGORIES, LEADERBOARD, LEADERBOARD_TASKS  # noqa: E402
from firefly_eval.report.collect import BenchResult, TrainRun  # noqa: E402
from firefly_eval.report.tables import bpc_groups, bpc_mean  # noqa: E402

CJK = re.compile(r"[\u2e80-\u9fff\uf900-\ufaff\uff00-\uffef]")
# file names (lower case, without '-' and '_') of common CJK fonts, tried first: Debian's fonts-wqy-microhei and
# -zenhei, Noto CJK, Source Han, Droid Sans Fallback
PREFERRED = ("wqymicrohei", "wqyzenhei", "notosanscjk", "notoserifcjk", "sourcehan", "droidsansfallback")


@functools.lru_cache(maxsize=None)
def cjk_font() -> str | None:
    """The family name of an installed font that has Chinese glyphs, or None. Fonts installed after
    matplotlib built its font cache are found too (they are registered with matplotlib here)."""
    from matplotlib import font_manager
    from matplotlib.ft2font import FT2Font

    known = [f.fname for f in font_manager.fontManager.ttflist]
    paths = list(dict.fromkeys(known + font_manager.findSystemFonts()))
    paths.sort(key=lambda p: not any(k in re.sub(r"[-_]", "", Path(p).name.lower()) for k in PREFERRED))
    for path in paths:
        try:
            charmap = FT2Font(path).get_charmap()
        except (OSError, RuntimeError, ValueError):
            continue
        if all(ord(c) in charmap for c in "中文汉字"):
            if path not in known:
                font_manager.fontManager.addfont(path)
            return font_manager.FontProperties(fname=path).get_name()
    return None


@contextlib.contextmanager
def font_context(font: str | None):
    """Draw with matplotlib's default font, falling back to `font` for the glyphs it lacks."""
    if font is None:
        yield
        return
    with matplotlib.rc_context({"font.family": [matplotlib.rcParams["font.sans-serif"][0], font]}):
        yield


class Labels:
    """Text for figures: as given when a CJK font is used (or the text has no Chinese), else a number whose
    meaning the report lists (`replaced`: placeholder -> text)."""

    def __init__(self, font: str | None):
        self.font = font
        self.replaced: dict[str, str] = {}

    def __call__(self, text: str) -> str:
        if self.font is not None or not CJK.search(text):
            return text
        for placeholder, original in self.replaced.items():
            if original == text:
                return placeholder
        placeholder = f"[{len(self.replaced) + 1}]"
        self.replaced[placeholder] = text
        return placeholder


def _as_is(text: str) -> str:
    return text


COLORS = {"win": "#4c9a2a", "tie": "#b0b0b0", "loss": "#c0392b"}


def loss_curves(runs: list[TrainRun], label=_as_is) -> Figure:
    """One panel per run (steps restart in each run): training loss against step."""
    fig = Figure(figsize=(5 * len(runs), 3.6), dpi=100, layout="constrained")
    for ax, run in zip(fig.subplots(1, len(runs), squeeze=False)[0], runs):
        ax.plot([r["step"] for r in run.loss], [r["loss"] for r in run.loss], marker=".", label=label(run.name))
        ax.set_title(f"{label(run.name)} ({run.info['command']})")
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


def win_tie_loss(tally: dict, label=_as_is) -> Figure:
    """One stacked bar per pair: A's wins, ties and losses against B."""
    pairs = tally["pairs"]
    fig = Figure(figsize=(7, 1.2 + 0.6 * len(pairs)), dpi=100, layout="constrained")
    ax = fig.subplots()
    _stacked(ax, [f"{label(p['model_a'])} vs {label(p['model_b'])}" for p in pairs], pairs)
    ax.set_title("Human evaluation: win / tie / loss of A against B")
    return fig


def per_task(tally: dict, label=_as_is) -> Figure | None:
    """One panel per pair with per-task breakdown: stacked win/tie/loss per task."""
    pairs = [p for p in tally["pairs"] if p.get("per_task")]
    if not pairs:
        return None
    tallest = max(len(p["per_task"]) for p in pairs)
    fig = Figure(figsize=(7, (1.2 + 0.4 * tallest) * len(pairs)), dpi=100, layout="constrained")
    for ax, p in zip(fig.subplots(len(pairs), 1, squeeze=False)[:, 0], pairs):
        tasks = sorted(p["per_task"])
        _stacked(ax, [label(t) for t in tasks], [p["per_task"][t] for t in tasks])
        ax.set_title(f"{label(p['model_a'])} vs {label(p['model_b'])} by task")
    return fig


def benchmarks(cmmlu: list[BenchResult], leaderboard: list[BenchResult], label=_as_is) -> Figure | None:
    """Grouped bars per model: CMMLU categories + average, and the leaderboard tasks + average."""
    panels = [(cmmlu, "CMMLU", CMMLU_CATEGORIES, lambda r, k: r.data["categories"].get(k)),
              (leaderboard, "Open LLM Leaderboard tasks", LEADERBOARD_TASKS,
               lambda r, k: (r.data["tasks"].get(k) or {}).get("value"))]
    panels = [p for p in panels if p[0]]
    if not panels:
        return None
    fig = Figure(figsize=(7 * len(panels), 3.8), dpi=100, layout="constrained")
    for ax, (results, title, keys, get) in zip(fig.subplots(1, len(panels), squeeze=False)[0], panels):
        names = [LEADERBOARD[k].display if k in LEADERBOARD else k for k in keys] + ["Average"]
        width = 0.8 / len(results)
        for i, r in enumerate(results):
            values = [get(r, k) for k in keys] + [r.data["average"]]
            xs = [j + (i - (len(results) - 1) / 2) * width for j in range(len(names))]
            ax.bar([x for x, v in zip(xs, values) if v is not None], [v for v in values if v is not None],
                   width, label=label(r.label))
        ax.set_xticks(range(len(names)), names, rotation=20, ha="right")
        ax.set_ylabel("accuracy (%)")
        ax.set_ylim(0, 100)
        ax.set_title(title)
        ax.legend(fontsize="small")
        ax.grid(axis="y", alpha=0.3)
    return fig


def _bar_panel(ax, names: list[str], values: list[float], color: str, ylabel: str, title: str) -> None:
    """One bar per name, each labelled with its value."""
    bars = ax.bar(range(len(names)), values, 0.6, color=color)
    ax.bar_label(bars, fmt="%.3f", padding=2)
    ax.margins(y=0.12)
    ax.set_xticks(list(range(len(names))), names)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)


def bits_per_char(results: list[BenchResult], label=_as_is) -> Figure:
    """Left: bits per character per model (bar: mean over its runs; a dot per run/seed). Right: tokens per
    character of each model's tokenizer on the same text."""
    groups = bpc_groups(results)
    fig = Figure(figsize=(9, 3.6), dpi=100, layout="constrained")
    left, right = fig.subplots(1, 2)
    names = [label(name) for name, _ in groups]
    xs = range(len(groups))
    _bar_panel(left, names, [bpc_mean(runs) for _, runs in groups], "#4c72b0", "bits per character",
               "Held-out text: bits per character")
    for x, (_, runs) in zip(xs, groups):
        left.plot([x] * len(runs), [r.data["bits_per_char"] for r in runs], "o", color="black", markersize=4)
    _bar_panel(right, names, [bpc_mean(runs, "tokens_per_char") for _, runs in groups], "#dd8452",
               "tokens per character", "Tokens per character (each model's tokenizer)")
    return fig


def save(fig: Figure, path: Path) -> None:
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png")
