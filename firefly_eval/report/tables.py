"""The report's tables, in the seed's style, built only from validated result files.

Each builder returns a `Table` of already formatted cells; `markdown.render_table` prints it. Accuracies
are shown as percentages with two decimals, human-evaluation rates as percentages with one decimal.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from statistics import mean

from firefly_eval.answers import Answers
from firefly_eval.benchmarks import CMMLU_CATEGORIES, LEADERBOARD, LEADERBOARD_TASKS
from firefly_eval.report.collect import BenchResult, Reference, TrainRun

MISSING = "–"


@dataclass
class Table:
    headers: list[str]
    rows: list[list[str]]


def acc(v) -> str:
    return MISSING if v is None else f"{v:.2f}"


def pct(fraction: float | None) -> str:
    return MISSING if fraction is None else f"{100 * fraction:.1f}%"


def interval(ci: list | None) -> str:
    return MISSING if ci is None else f"[{pct(ci[0])}, {pct(ci[1])}]"


def p_value(p: float | None) -> str:
    return MISSING if p is None else f"{p:.3g}"


def duration(seconds: float) -> str:
    m, s = divmod(round(seconds), 60)
    return f"{m}m{s:02d}s" if m else f"{s}s"


def external(ref: Reference) -> str:
    return f"{ref.model} (external: {ref.source})"


def shown_path(path) -> str:
    """A recorded absolute path under the current folder, relative to it (a committed report then names no
    machine's folders; the commands it lists run from the same folder); any other path as recorded."""
    p = Path(str(path))
    if not p.is_absolute():
        return str(path)
    try:
        return str(p.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def training(runs: list[TrainRun]) -> Table:
    rows = []
    for r in runs:
        i = r.info
        data = ", ".join(shown_path(d["path"]) for d in i["data"])
        rows.append([r.name, i["command"], i["base_model"], str(r.config.get("model", MISSING)), i["mode"], data, str(i["steps"]), str(i["tokens"]),
                     duration(i["train_runtime_s"]), MISSING if i.get("final_loss") is None else f"{i['final_loss']:.4f}"])
    return Table(["run", "command", "base model", "started from", "mode", "data", "steps", "tokens", "wall time", "final loss"], rows)


def _limit(result: BenchResult) -> str:
    return "all" if result.data.get("limit") is None else str(result.data["limit"])


def accuracy_interval(value: float, n: int) -> tuple[float, float]:
    """95% exact (Clopper-Pearson) interval, in percent, of an accuracy `value` (percent) measured on n questions."""
    from firefly_eval.stats import proportion_test

    _, (lo, hi), _ = proportion_test(round(value * n / 100), n)
    return 100 * lo, 100 * hi


def task_interval(entry: dict) -> tuple[float, float] | None:
    """95% interval of a leaderboard task score: exact binomial for an accuracy on n questions, value ± 1.96
    stderr (clipped to 0-100) for a score that is not a share of right answers (TruthfulQA's mc2)."""
    if entry["metric"] in ("acc", "acc_norm") and entry.get("n"):
        return accuracy_interval(entry["value"], int(entry["n"]))
    if entry.get("stderr") is not None:
        return max(0.0, entry["value"] - 1.96 * entry["stderr"]), min(100.0, entry["value"] + 1.96 * entry["stderr"])
    return None


def interval_pts(ci: tuple[float, float] | None) -> str:
    return MISSING if ci is None else f"[{ci[0]:.1f}, {ci[1]:.1f}]"


def cmmlu(results: list[BenchResult], refs: list[Reference]) -> Table:
    rows = [[r.label, *(acc(r.data["categories"].get(c)) for c in CMMLU_CATEGORIES), acc(r.data["average"]),
             interval_pts(accuracy_interval(r.data["average"], r.data["n_questions"]) if r.data["n_questions"] else None),
             str(r.data["n_questions"]), _limit(r)] for r in results]
    rows += [[external(ref), *(acc(ref.cmmlu.get(c)) for c in CMMLU_CATEGORIES), acc(ref.cmmlu.get("average")),
              MISSING, MISSING, MISSING] for ref in refs if ref.cmmlu]
    return Table(["model", *CMMLU_CATEGORIES, "Average", "95% CI of the average", "questions", "limit/subject"], rows)


def leaderboard(results: list[BenchResult], refs: list[Reference]) -> Table:
    first = {t: e for r in results for t, e in r.data["tasks"].items()}
    headers = ["model"]
    for t in LEADERBOARD_TASKS:
        e = first.get(t)
        name = LEADERBOARD[t].display
        headers.append(f"{name} ({e['shots']}-shot, {e['metric']})" if e else name)
    rows = []
    for r in results:
        cells = [r.label]
        for t in LEADERBOARD_TASKS:
            e = r.data["tasks"].get(t)
            if e is None:
                cells.append(MISSING)
                continue
            cell = acc(e["value"]) + (f" ± {e['stderr']:.2f}" if e.get("stderr") is not None else "")
            n = "" if e.get("n") is None else f"n = {int(e['n'])}, "
            cell += f" ({n}95% CI {interval_pts(task_interval(e))})"
            if (e["shots"], e["metric"]) != (first[t]["shots"], first[t]["metric"]):
                cell += f" ({e['shots']}-shot, {e['metric']})"
            cells.append(cell)
        rows.append(cells + [acc(r.data["average"]), _limit(r)])
    rows += [[external(ref), *(acc(ref.leaderboard.get(t)) for t in LEADERBOARD_TASKS),
              acc(ref.leaderboard.get("average")), MISSING] for ref in refs if ref.leaderboard]
    return Table(headers + ["Average", "limit/task"], rows)


def _pair(p: dict) -> str:
    return f"{p['model_a']} vs {p['model_b']}"


def win_tie_loss(tally: dict) -> Table:
    rows = []
    for p in tally["pairs"]:
        scale = p["_pct_scale"]
        rows.append([_pair(p), str(p["win"]), str(p["tie"]), str(p["loss"]), str(p["n"]),
                     *(pct(p[f"{k}_pct"] / scale) for k in ("win", "tie", "loss")),
                     pct(p["win_rate"]), interval(p["win_rate_ci"]), p_value(p["sign_test_p"])])
    return Table(["pair (A vs B)", "win", "tie", "loss", "n", "win %", "tie %", "loss %",
                  "win rate (win + tie/2)", "95% CI", "sign test p"], rows)


def per_task(tally: dict) -> Table:
    rows = []
    for p in tally["pairs"]:
        for task, c in sorted((p.get("per_task") or {}).items()):
            n = c["win"] + c["tie"] + c["loss"]
            rows.append([_pair(p), task, str(c["win"]), str(c["tie"]), str(c["loss"]), str(n),
                         pct((c["win"] + c["tie"] / 2) / n) if n else MISSING])
    return Table(["pair (A vs B)", "task", "win", "tie", "loss", "n", "win rate"], rows)


def position_bias(tally: dict) -> Table | None:
    b = tally.get("position_bias")
    if not b:
        return None
    return Table(["left wins", "right wins", "ties", "left win rate", "95% CI", "p"],
                 [[str(b["left_wins"]), str(b["right_wins"]), str(b["ties"]), pct(b["left_win_rate"]),
                   interval(b["ci"]), p_value(b["p"])]])


def agreement(tally: dict) -> Table | None:
    a = tally.get("agreement")
    if not a:
        return None
    kappa = lambda v: MISSING if v is None else f"{v:.3f}"  # noqa: E731
    return Table(["Cohen's kappa", "Fleiss' kappa", "items judged by several annotators"],
                 [[kappa(a.get("cohen_kappa")), kappa(a.get("fleiss_kappa")), str(a.get("n_items_multi", 0))]])


def bradley_terry(tally: dict) -> Table | None:
    bt = tally.get("bradley_terry")
    if not bt:
        return None
    return Table(["model", "Bradley-Terry score", "95% CI"],
                 [[m["model"], f"{m['score']:.3f}", f"[{m['ci'][0]:.3f}, {m['ci'][1]:.3f}]"] for m in bt])


def bpc_groups(results: list[BenchResult]) -> list[tuple[str, list[BenchResult]]]:
    """Results grouped by label, in first-seen order: a label given several times is one model trained with
    several seeds."""
    groups: dict[str, list[BenchResult]] = {}
    for r in results:
        groups.setdefault(r.label, []).append(r)
    return list(groups.items())


def bpc_mean(runs: list[BenchResult], key: str = "bits_per_char") -> float:
    return mean(r.data[key] for r in runs)


def bpc_spread(runs: list[BenchResult]) -> float | None:
    """max - min of the runs' bits per character; None for a single run."""
    values = [r.data["bits_per_char"] for r in runs]
    return max(values) - min(values) if len(values) > 1 else None


def bits_per_char(results: list[BenchResult]) -> Table:
    groups = bpc_groups(results)
    first = bpc_mean(groups[0][1])
    rows = []
    for i, (label, runs) in enumerate(groups):
        spread = bpc_spread(runs)
        change = MISSING if i == 0 else f"{bpc_mean(runs) - first:+.3f}"
        rows.append([label, str(len(runs)), f"{bpc_mean(runs):.3f}", MISSING if spread is None else f"{spread:.3f}",
                     change, f"{bpc_mean(runs, 'bits_per_byte'):.3f}", f"{bpc_mean(runs, 'tokens_per_char'):.3f}"])
    return Table(["model", "runs (seeds)", "bits / char", "spread over seeds (max - min)",
                  f"change vs {groups[0][0]}", "bits / byte", "tokens / char"], rows)


def _scored_model(model: dict) -> str:
    """The checkpoint, and the grown tokenizer when one was given (the expanded model before training)."""
    shown = shown_path(model.get("ckpt"))
    if model.get("embedding_init"):
        shown += f" + {shown_path(model.get('tokenizer'))} ({model['embedding_init']} init, untrained)"
    return shown


def bits_per_char_runs(results: list[BenchResult]) -> Table:
    rows = [[r.label, _scored_model(r.data["model"]), f"{r.data['bits_per_char']:.4f}",
             f"{r.data['bits_per_byte']:.4f}", str(r.data["tokens"]), f"{r.data['tokens_per_char']:.3f}",
             shown_path(r.path)] for r in results]
    return Table(["model", "checkpoint", "bits / char", "bits / byte", "tokens", "tokens / char", "result file"], rows)


def tokenizer_efficiency(stats: dict) -> Table:
    total = stats["total"]
    rows = [[t["name"], str(t["vocab_size"]), str(total["tokens"][t["name"]]),
             f"{total['tokens_per_char'][t['name']]:.3f}", pct(total["reduction_vs_first"][t["name"]])]
            for t in stats["tokenizers"]]
    return Table(["tokenizer", "vocab size", f"tokens ({total['chars']} chars)", "tokens / char",
                  "reduction vs first"], rows)


def tokenizer_files(stats: dict) -> Table:
    names = [t["name"] for t in stats["tokenizers"]]
    rows = [[f["path"], str(f["chars"]), *(str(f["tokens"][n]) for n in names),
             *(f"{f['tokens'][n] / f['chars']:.3f}" for n in names)] for f in stats["files"]]
    return Table(["file", "chars", *(f"tokens: {n}" for n in names), *(f"tokens / char: {n}" for n in names)], rows)


def answers(sets: list[Answers]) -> Table:
    rows = []
    for a in sets:
        s = a.header.get("sampling") or {}
        sampling = ", ".join(f"{k}={v}" for k, v in s.items()) or MISSING
        rows.append([a.header["model"], str(a.header.get("set", MISSING)), str(a.n), sampling,
                     str(a.header.get("seed", MISSING)), MISSING if a.mean_tokens is None else f"{a.mean_tokens:.1f}"])
    return Table(["model", "evaluation set", "answers", "sampling", "seed", "mean tokens / answer"], rows)
