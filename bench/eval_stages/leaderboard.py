"""Open LLM Leaderboard v1 (ARC 25-shot, HellaSwag 10-shot, MMLU 5-shot, TruthfulQA mc2): lm-eval's stock
`HFLM` (the engine's default path, `batch_size` 'auto' on a GPU as `firefly-eval leaderboard` had it) against
`FireflyLM`, both through `lm_eval.simple_evaluate` with the same task YAMLs, the same model loaded once and
the same documents. Each task is one *unit*: stock, then ours, each a whole timed `simple_evaluate` call
(building the contexts on the CPU included). Every request's (log-likelihood, is_greedy) is compared one by
one (from the logged samples), then every metric. `--noise-batch-size N` runs the stock path again at batch
size N and compares it with itself the same way: how far the stock engine's own numbers move with its batch
(in bf16, the floor to read ours against). `--full` then runs ours alone on every question.

A full run of the stock path at 7B takes longer than one GPU call, so it can be split into shards, each a
run of its own with both paths in it: `--docs A:B` takes documents A to B-1 of ARC, HellaSwag and TruthfulQA
(through lm-eval's `samples`), `--mmlu-subjects` whole MMLU subjects. Shards of ARC and HellaSwag that do
not start at document 0 draw other few-shot examples than one unsharded run would (lm-eval draws them in
document order from one seeded generator), so their metrics are not the unsharded run's; both paths in a
shard see the same prompts. `bench/leaderboard_shards.py` adds the shards' JSON files up.
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

from firefly_eval.benchmarks import LEADERBOARD


def _doc_range(text: str) -> tuple[int, int]:
    start, _, end = text.partition(":")
    return int(start), int(end) if end else 1 << 62


def add_arguments(p) -> None:
    p.add_argument("--data-dir", type=Path, required=True,
                   help="folder with mmlu/, arc_challenge/, hellaswag/, truthfulqa/")
    p.add_argument("--tasks", nargs="+", default=list(LEADERBOARD), choices=list(LEADERBOARD))
    p.add_argument("--limit", type=int, default=None, help="questions per task (per MMLU subject) for both paths")
    p.add_argument("--docs", type=_doc_range, metavar="A:B",
                   help="a shard: documents A..B-1 (B omitted: to the end) of ARC, HellaSwag and TruthfulQA")
    p.add_argument("--mmlu-subjects", nargs="+", metavar="SUBJECT", help="a shard: every question of these subjects")
    p.add_argument("--batch-size", default=None, help="both paths (default: auto on a GPU, 8 on the CPU)")
    p.add_argument("--dtype", choices=("bfloat16", "float32"), default=None, help="default: bf16 on a GPU")
    p.add_argument("--noise-batch-size", type=int, help="also run the stock path at this batch size, against itself")
    p.add_argument("--full", action="store_true", help="then run ours alone on every question, timed")


def units(args, task_dir: Path) -> dict[str, tuple[str, dict | None]]:
    """Unit label -> (our task name, lm-eval `samples`: task name -> document indices, or None for the task
    under `--limit`)."""
    from lm_eval.tasks import TaskManager, get_task_dict

    shards = {t: (tuple(f"ff_mmlu_{s}" for s in args.mmlu_subjects) if t == "mmlu" else (LEADERBOARD[t].lm_eval_task,))
              for t in args.tasks if (args.mmlu_subjects if t == "mmlu" else args.docs)}
    names = [n for ns in shards.values() for n in ns]
    docs = {n: len(task.eval_docs) for n, task in get_task_dict(
        names, TaskManager(include_path=str(task_dir), include_defaults=False)).items()} if names else {}
    start, end = args.docs or (0, 0)
    found = {}
    for t in args.tasks:
        if t not in shards:
            found[t] = (t, None)
        elif t == "mmlu":
            found[f"mmlu ({len(args.mmlu_subjects)} subjects)"] = (t, {n: range(docs[n]) for n in shards[t]})
        else:
            (name,) = shards[t]
            stop = min(end, docs[name])
            found[f"{t} docs {start}:{stop}"] = (t, {name: range(start, stop)})
    return found


def _requests(out: dict) -> dict:
    """(task, doc_id, choice) -> (log-likelihood, is_greedy) from simple_evaluate's logged samples."""
    found = {}
    for task, samples in out["samples"].items():
        for s in samples:
            for k, resp in enumerate(s["resps"]):
                ll, greedy = resp[0]
                found[task, s["doc_id"], k] = (float(ll), bool(greedy))
    return found


def _metrics(out: dict) -> dict:
    return {(task, key): value for task, row in out["results"].items() for key, value in row.items()
            if isinstance(value, float) and "_stderr" not in key}


def _compare(x: dict, y: dict) -> dict:
    """Two simple_evaluate outputs, request by request and metric by metric."""
    a, b = _requests(x), _requests(y)
    assert a.keys() == b.keys(), "the two runs scored different requests"
    ma, mb = _metrics(x), _metrics(y)
    return {"requests_compared": len(a), "max_abs_loglikelihood_diff": max(abs(a[k][0] - b[k][0]) for k in a),
            "is_greedy_differences": sum(a[k][1] != b[k][1] for k in a),
            "max_abs_metric_diff": max(abs(ma[k] - mb[k]) for k in ma), "metrics_identical": ma == mb}


def _describe(c: dict) -> str:
    return (f"max |d loglikelihood| {c['max_abs_loglikelihood_diff']:.3g}, is_greedy differs on "
            f"{c['is_greedy_differences']}; metrics identical: {c['metrics_identical']} "
            f"(max |d| {c['max_abs_metric_diff']:.3g})")


def _timed(name, model, tok, task_dir, task, samples, engine, batch_size, limit) -> tuple[dict, dict]:
    import torch

    from firefly_eval import leaderboard

    t0 = time.perf_counter()
    out = leaderboard.evaluate(model, tok, task_dir, [task], None if samples else limit, batch_size, engine=engine,
                               log_samples=True, samples=samples)
    seconds = time.perf_counter() - t0
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    n = sum(len(s["resps"]) for logged in out["samples"].values() for s in logged)
    print(f"[{name}] {n} requests in {seconds:.1f} s", flush=True)
    return {"seconds": seconds, "requests": n, "metrics": {f"{t}/{k}": v for (t, k), v in _metrics(out).items()}}, out


def run(args) -> dict:
    import torch

    from firefly_core.io import write_json
    from firefly_eval import checkpoints, leaderboard

    if args.limit is not None and args.docs and set(args.tasks) - {"mmlu"}:
        raise SystemExit("--limit and --docs: choose one (--docs is a shard of whole tasks)")
    dtype = getattr(torch, args.dtype) if args.dtype else None
    model, tok, _ = checkpoints.load(str(args.model_dir), dtype=dtype)
    batch_size = args.batch_size or ("auto" if torch.cuda.is_available() else 8)
    with torch.no_grad():  # first CUDA kernels and allocations outside both timings
        model(torch.tensor([[1, 2, 3]], device=model.device))
    task_dir = leaderboard.render_tasks(args.data_dir.resolve(), Path(tempfile.mkdtemp()) / "tasks")
    result = {}
    for label, (task, samples) in units(args, task_dir).items():
        unit = {}
        unit["stock"], stock = _timed(f"{label}: hf", model, tok, task_dir, task, samples, "hf", batch_size,
                                      args.limit)
        unit["ours"], ours = _timed(f"{label}: firefly", model, tok, task_dir, task, samples, "firefly",
                                    batch_size, args.limit)
        unit["agreement"] = _compare(stock, ours)
        if args.noise_batch_size:
            unit["stock_again"], again = _timed(f"{label}: hf again", model, tok, task_dir, task, samples, "hf",
                                                args.noise_batch_size, args.limit)
            unit["stock_against_itself"] = _compare(stock, again)
        result[label] = unit
        if args.json:  # each finished unit is kept if a time limit ends the run (bench/leaderboard_shards.py reads it)
            write_json(args.json, {"units": result, "dtype": str(model.dtype), "batch_size": str(batch_size),
                                   "partial": True})
    full = {}
    if args.full:
        for task in args.tasks:
            full[task], _ = _timed(f"{task}: firefly, every question", model, tok, task_dir, task, None,
                                   "firefly", batch_size, None)
    summary = summarize(result)
    print_table(result, summary)
    print(f"dtype {model.dtype}, batch size {batch_size}" + (f", noise batch size {args.noise_batch_size}"
                                                            if args.noise_batch_size else ""))
    for task, row in full.items():
        print(f"ours alone, every question of {task}: {row['requests']} requests in {row['seconds']:.1f} s")
    return {"units": result, **summary, "full": full, "dtype": str(model.dtype), "batch_size": str(batch_size),
            "noise_batch_size": args.noise_batch_size}


def summarize(units: dict) -> dict:
    """Totals over units (one run's, or several shards' together): seconds, requests, the worst agreement."""
    stock = sum(u["stock"]["seconds"] for u in units.values())
    ours = sum(u["ours"]["seconds"] for u in units.values())
    worst = {"requests_compared": sum(u["agreement"]["requests_compared"] for u in units.values()),
             "max_abs_loglikelihood_diff": max(u["agreement"]["max_abs_loglikelihood_diff"] for u in units.values()),
             "is_greedy_differences": sum(u["agreement"]["is_greedy_differences"] for u in units.values()),
             "max_abs_metric_diff": max(u["agreement"]["max_abs_metric_diff"] for u in units.values()),
             "metrics_identical": all(u["agreement"]["metrics_identical"] for u in units.values())}
    noise = [u["stock_against_itself"] for u in units.values() if "stock_against_itself" in u]
    return {"stock_seconds": stock, "ours_seconds": ours, "speedup": stock / ours,
            "requests": sum(u["stock"]["requests"] for u in units.values()), **worst,
            "stock_against_itself": {
                "max_abs_loglikelihood_diff": max(n["max_abs_loglikelihood_diff"] for n in noise),
                "is_greedy_differences": sum(n["is_greedy_differences"] for n in noise),
                "metrics_identical": all(n["metrics_identical"] for n in noise)} if noise else None}


def print_table(units: dict, summary: dict) -> None:
    noise = summary["stock_against_itself"] is not None
    print(f"\n{'unit':<34}{'requests':>9}{'stock s':>9}{'ours s':>9}{'speed-up':>9}{'max|d ll|':>11}"
          f"{'greedy!=':>9}{'metrics =':>10}" + (f"{'stock vs stock':>16}" if noise else ""))
    for label, u in units.items():
        a = u["agreement"]
        print(f"{label:<34}{u['stock']['requests']:>9}{u['stock']['seconds']:>9.1f}{u['ours']['seconds']:>9.1f}"
              f"{u['stock']['seconds'] / u['ours']['seconds']:>9.2f}{a['max_abs_loglikelihood_diff']:>11.3g}"
              f"{a['is_greedy_differences']:>9}{str(a['metrics_identical']):>10}"
              + (f"{u['stock_against_itself']['max_abs_loglikelihood_diff']:>16.3g}" if noise else ""))
    print(f"{'total':<34}{summary['requests']:>9}{summary['stock_seconds']:>9.1f}{summary['ours_seconds']:>9.1f}"
          f"{summary['speedup']:>9.2f}{summary['max_abs_loglikelihood_diff']:>11.3g}"
          f"{summary['is_greedy_differences']:>9}{str(summary['metrics_identical']):>10}"
          + (f"{summary['stock_against_itself']['max_abs_loglikelihood_diff']:>16.3g}" if noise else ""))
    print(f"\nfirefly / stock: time x{1 / summary['speedup']:.3f} (speed-up x{summary['speedup']:.2f}); "
          f"{summary['requests_compared']} requests compared: {_describe(summary)}")
    if noise:
        n = summary["stock_against_itself"]
        print(f"stock against itself at the other batch size: max |d loglikelihood| "
              f"{n['max_abs_loglikelihood_diff']:.3g}, is_greedy differs on {n['is_greedy_differences']}, "
              f"metrics identical: {n['metrics_identical']}")
