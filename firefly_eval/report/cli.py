"""`firefly-eval report`: one markdown file (+ PNG figures beside it) from the result files of a project.

    firefly-eval report --run runs/main/pretrain --run runs/main/sft \\
        --cmmlu base=results/cmmlu_base.json --cmmlu tuned=results/cmmlu_tuned.json \\
        --vocab-stats results/vocab_stats.json --tally results/tally.json \\
        --compare refs.yaml -o reports/main/REPORT.md

Model-level results take `LABEL=PATH` (or just PATH: the label is then the result's `model.ckpt`).
"""
from __future__ import annotations

import os
import platform
import shlex
from pathlib import Path

from tqdm import tqdm

from firefly_core.errors import FireflyError
from firefly_core.io import write_text
from firefly_core.provenance import git_commit, library_versions
from firefly_eval.report import figures as figs
from firefly_eval.report.collect import collect
from firefly_eval.report.markdown import CAPTIONS, render


def add_arguments(p) -> None:
    p.add_argument("--run", action="append", default=[], metavar="[LABEL=]RUN_DIR",
                   help="a firefly-train run folder (config.yaml, run_info.json, loss.jsonl); repeatable")
    p.add_argument("--cmmlu", action="append", default=[], metavar="[LABEL=]JSON",
                   help="a `firefly-eval cmmlu -o` result; repeatable, one per model")
    p.add_argument("--leaderboard", action="append", default=[], metavar="[LABEL=]JSON",
                   help="a `firefly-eval leaderboard -o` result; repeatable, one per model")
    p.add_argument("--bpc", action="append", default=[], metavar="[LABEL=]JSON",
                   help="a `firefly-eval bits-per-char -o` result on the held-out text; repeatable, the first is "
                        "the baseline; a label given several times is one model trained with several seeds")
    p.add_argument("--vocab-stats", metavar="JSON", help="a `firefly-train vocab stats --json` result")
    p.add_argument("--tally", metavar="JSON", help="a `firefly-eval tally -o` result (human win/tie/loss)")
    p.add_argument("--answers", action="append", default=[], metavar="JSONL",
                   help="a `firefly-eval generate` answers file (listed with its sampling settings); repeatable")
    p.add_argument("--compare", metavar="YAML",
                   help="reference scores to show as external rows: a list of {model, source, "
                        "cmmlu: {category|average: acc}, leaderboard: {task|average: acc}}")
    p.add_argument("--title", default="Firefly training and evaluation report")
    p.add_argument("-o", "--output", required=True, metavar="REPORT.md",
                   help="markdown file to write; figures go beside it as <stem>-<figure>.png")


def environment() -> dict:
    return {"git_commit": git_commit(), "versions": library_versions(),
            "hardware": f"{platform.system()} {platform.machine()}, Python {platform.python_version()}, "
                        f"{os.cpu_count()} CPUs"}


def command_line(args) -> str:
    """The exact command that regenerates this report, rebuilt from the parsed arguments."""
    words = ["firefly-eval", "report"]
    for flag, values in (("--run", args.run), ("--bpc", args.bpc), ("--cmmlu", args.cmmlu),
                         ("--leaderboard", args.leaderboard), ("--answers", args.answers)):
        for v in values:
            words += [flag, v]
    for flag, v in (("--vocab-stats", args.vocab_stats), ("--tally", args.tally), ("--compare", args.compare),
                    ("--title", args.title), ("-o", args.output)):
        if v is not None:
            words += [flag, v]
    return shlex.join(words)


def build_figures(inp, label=figs._as_is) -> dict:
    """name -> matplotlib Figure, for each figure the inputs support; `label` maps names shown in figures."""
    out = {}
    if inp.bpc:
        out["bpc"] = figs.bits_per_char(inp.bpc, label)
    if inp.runs and any(r.loss for r in inp.runs):
        out["loss"] = figs.loss_curves([r for r in inp.runs if r.loss], label)
    bench = figs.benchmarks(inp.cmmlu, inp.leaderboard, label)
    if bench is not None:
        out["benchmarks"] = bench
    if inp.tally and inp.tally["pairs"]:
        out["win_tie_loss"] = figs.win_tie_loss(inp.tally, label)
        per_task = figs.per_task(inp.tally, label)
        if per_task is not None:
            out["per_task"] = per_task
    return out


def run(args) -> int:
    output = Path(args.output)
    if output.suffix != ".md":
        raise FireflyError(f"-o {output}: the report is a markdown file, name it *.md")
    inputs = collect(runs=args.run, cmmlu=args.cmmlu, leaderboard=args.leaderboard, vocab_stats=args.vocab_stats,
                     tally=args.tally, answers=args.answers, compare=args.compare, bpc=args.bpc)
    if not (inputs.runs or inputs.cmmlu or inputs.leaderboard or inputs.vocab_stats or inputs.tally or inputs.answers
            or inputs.bpc):
        raise FireflyError("nothing to report: give at least one of --run, --bpc, --cmmlu, --leaderboard, "
                           "--vocab-stats, --tally, --answers")
    names = {}
    font = figs.cjk_font()
    labels = figs.Labels(font)
    with figs.font_context(font):
        for name, fig in tqdm(build_figures(inputs, labels).items(), desc="figures", unit="png"):
            names[name] = f"{output.stem}-{name}.png"
            figs.save(fig, output.parent / names[name])
    for stale in output.parent.glob(f"{output.stem}-*.png"):  # figures of an earlier run this one no longer has
        if stale.name not in names.values() and stale.stem[len(output.stem) + 1:] in CAPTIONS:
            stale.unlink()
    write_text(output, render(inputs, args.title, names, command_line(args), environment(), labels.replaced))
    print(f"report: {output} ({len(names)} figures)")
    return 0
