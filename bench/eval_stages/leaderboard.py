"""Open LLM Leaderboard v1 (ARC 25-shot, HellaSwag 10-shot, MMLU 5-shot, TruthfulQA mc2): lm-eval's stock
`HFLM` (the engine's default path, `batch_size` 'auto' on a GPU as `firefly-eval leaderboard` had it) against
`FireflyLM`, both through `lm_eval.simple_evaluate` with the same task YAMLs, the same model loaded once and
the same `--limit`. Every request's (log-likelihood, is_greedy) is compared one by one (from the logged
samples), then every metric. Times are whole `simple_evaluate` calls: building the contexts on the CPU
included. `--noise-batch-size N` runs the stock path again at batch size N and compares it with itself the same
way: how far the stock engine's own numbers move with its batch (in bf16, the floor to read ours against).
`--full` then runs ours alone on every question.
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

from firefly_eval.benchmarks import LEADERBOARD


def add_arguments(p) -> None:
    p.add_argument("--data-dir", type=Path, required=True,
                   help="folder with mmlu/, arc_challenge/, hellaswag/, truthfulqa/")
    p.add_argument("--tasks", nargs="+", default=list(LEADERBOARD), choices=list(LEADERBOARD))
    p.add_argument("--limit", type=int, default=None, help="questions per task (per MMLU subject) for both paths")
    p.add_argument("--batch-size", default=None, help="both paths (default: auto on a GPU, 8 on the CPU)")
    p.add_argument("--dtype", choices=("bfloat16", "float32"), default=None, help="default: bf16 on a GPU")
    p.add_argument("--noise-batch-size", type=int, help="also run the stock path at this batch size, against itself")
    p.add_argument("--full", action="store_true", help="then run ours alone on every question, timed")


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


def _timed(name, model, tok, task_dir, args, engine, batch_size, limit) -> tuple[dict, dict]:
    import torch

    from firefly_eval import leaderboard

    t0 = time.perf_counter()
    out = leaderboard.evaluate(model, tok, task_dir, args.tasks, limit, batch_size, engine=engine, log_samples=True)
    seconds = time.perf_counter() - t0
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    n = sum(len(s["resps"]) for samples in out["samples"].values() for s in samples)
    row = {"seconds": seconds, "requests": n, "requests_per_s": n / seconds,
           **{t: out["results"][LEADERBOARD[t].lm_eval_task][f"{LEADERBOARD[t].lm_eval_metric},none"] for t in args.tasks}}
    print(f"[{name}] {n} requests in {seconds:.1f} s", flush=True)
    return row, out


def run(args) -> dict:
    import torch

    from firefly_eval import checkpoints, leaderboard

    dtype = getattr(torch, args.dtype) if args.dtype else None
    model, tok, _ = checkpoints.load(str(args.model_dir), dtype=dtype)
    gpu = torch.cuda.is_available()
    batch_size = args.batch_size or ("auto" if gpu else 8)
    with torch.no_grad():  # first CUDA kernels and allocations outside both timings
        model(torch.tensor([[1, 2, 3]], device=model.device))
    task_dir = leaderboard.render_tasks(args.data_dir.resolve(), Path(tempfile.mkdtemp()) / "tasks")
    rows = {}
    rows["hf (stock HFLM)"], stock = _timed("hf", model, tok, task_dir, args, "hf", batch_size, args.limit)
    rows["firefly (FireflyLM)"], ours = _timed("firefly", model, tok, task_dir, args, "firefly", batch_size,
                                               args.limit)
    agreement, noise = _compare(stock, ours), None
    if args.noise_batch_size:
        rows[f"hf, batch {args.noise_batch_size}"], stock_again = _timed(
            "hf again", model, tok, task_dir, args, "hf", args.noise_batch_size, args.limit)
        noise = {**_compare(stock, stock_again), "batch_size": args.noise_batch_size}
    if args.full:
        rows["firefly (full)"], _ = _timed("firefly full", model, tok, task_dir, args, "firefly", batch_size, None)
    print(f"\n{'path':<22}{'seconds':>10}{'requests':>10}{'req/s':>10}" + "".join(f"{t:>16}" for t in args.tasks))
    for name, r in rows.items():
        print(f"{name:<22}{r['seconds']:>10.1f}{r['requests']:>10}{r['requests_per_s']:>10.1f}"
              + "".join(f"{r[t]:>16.6f}" for t in args.tasks))
    speedup = rows["hf (stock HFLM)"]["seconds"] / rows["firefly (FireflyLM)"]["seconds"]
    print(f"\nfirefly / stock: time x{1 / speedup:.3f} (speed-up x{speedup:.2f}); "
          f"{agreement['requests_compared']} requests compared: {_describe(agreement)}; dtype {model.dtype}, "
          f"batch size {batch_size}")
    if noise:
        print(f"stock at batch {batch_size} vs stock at batch {noise['batch_size']}: {_describe(noise)}")
    return {"rows": rows, "speedup": speedup, **agreement, "stock_against_itself": noise, "dtype": str(model.dtype),
            "batch_size": str(batch_size)}
