"""Where an evaluation command's time goes: any `firefly-eval` command run in this process under torch.profiler.

    python bench/eval_profile.py --json prof.json -- cmmlu --ckpt /tmp/l7 --data-dir DATA/cmmlu --subjects agronomy anatomy -o /tmp/c.json

Prints the command's wall time, the time the device spent in kernels, the ops that took the most of it and, on a
GPU, how long the GPU sat idle between kernels and which CPU op was running in those gaps
(`op_profile.device_idle`): the question for CMMLU, whose inference loop takes 117 s of a 152.6 s run while
the model's arithmetic is about a fifth of that (bench/NOTES.md). Plain Python runs no op, so the functions
named in `RANGES` (our scoring and bookkeeping, OpenCompass's inferencer entry) run inside `record_function`
ranges of their own name: each range's wall time is printed, and a gap is charged to the innermost range or op
running. (The profiler's own `with_stack` fails to parse this run's events: a frame name is not valid UTF-8.)
"""
from __future__ import annotations

import argparse
import functools
import importlib
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from op_profile import device_idle, profiled  # noqa: E402


RANGES = (
    "opencompass.tasks.openicl_infer:OpenICLInferTask._inference",
    "firefly_eval.ppl_inferencer:FireflyPPLInferencer.inference",
    "firefly_eval.opencompass_model:FireflyCausalLM.remember_token_ids",
    "firefly_eval.opencompass_model:FireflyCausalLM.get_ppl",
    "firefly_eval.prefix_ppl:PrefixCachedPPL.__call__",
    "firefly_eval.prefix_ppl:PrefixCachedPPL._fill_stems",
    "firefly_eval.prefix_ppl:PrefixCachedPPL._run_chunk",
    "firefly_eval.prefix_ppl:PrefixCachedPPL._set_prefix",
    "opencompass.openicl.icl_inferencer.icl_base_inferencer:PPLInferencerOutputHandler.write_to_json",
)


def add_ranges(specs=RANGES) -> list[str]:
    """Wrap each `module:Class.method` in a `record_function` range named `Class.method`; the names wrapped."""
    names = []
    for spec in specs:
        module, qualname = spec.split(":")
        owner_name, attr = qualname.rsplit(".", 1)
        owner = importlib.import_module(module)
        for part in owner_name.split("."):
            owner = getattr(owner, part)
        fn = getattr(owner, attr)

        @functools.wraps(fn)
        def ranged(*a, __fn=fn, __name=qualname, **kw):
            with torch.profiler.record_function(__name):
                return __fn(*a, **kw)
        setattr(owner, attr, ranged)
        names.append(qualname)
    return names


def range_seconds(events, names: list[str]) -> dict[str, dict]:
    """Each range's calls and wall seconds on the CPU (inclusive of everything it called)."""
    out = {n: {"calls": 0, "s": 0.0} for n in names}
    for e in events:
        if e.name in out and e.device_type.name == "CPU":
            out[e.name]["calls"] += 1
            out[e.name]["s"] += e.time_range.elapsed_us() / 1e6
    return {n: {"calls": r["calls"], "s": round(r["s"], 3)} for n, r in out.items()}


def _callers(event, depth: int = 4) -> str:
    names, parent = [], event.cpu_parent
    while parent is not None and len(names) < depth:
        names.append(parent.name)
        parent = parent.cpu_parent
    return " < ".join(names)


def ops_by_time(events) -> list[dict]:
    """Every op with its self time on the device (on the CPU without a GPU) and call count, most time first;
    `sites`: the three (input shapes, callers) groups of the op that took the most of its time."""
    cuda = torch.cuda.is_available()
    totals: dict[str, list] = {}
    for e in events:
        if e.device_type.name != "CPU":
            continue
        ms = (e.self_device_time_total if cuda else e.self_cpu_time_total) / 1000
        row = totals.setdefault(e.name, [0.0, 0, {}])
        row[0], row[1] = row[0] + ms, row[1] + 1
        if ms:
            site = row[2].setdefault((str(e.input_shapes)[:120], _callers(e)), [0.0, 0])
            site[0], site[1] = site[0] + ms, site[1] + 1
    ranked = sorted(totals.items(), key=lambda kv: -kv[1][0])
    return [{"op": name, "ms": round(ms, 3), "calls": calls,
             "sites": [{"shapes": shapes, "callers": callers, "ms": round(t, 3), "calls": n} for (shapes, callers), (t, n)
                       in sorted(sites.items(), key=lambda kv: -kv[1][0])[:3]]}
            for name, (ms, calls, sites) in ranked]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", type=Path, help="also write the numbers here")
    ap.add_argument("command", nargs=argparse.REMAINDER, help="after --: a firefly-eval command and its arguments")
    args = ap.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        ap.error("give a firefly-eval command after --")
    from firefly_eval.cli import main as firefly_eval

    names = add_ranges()
    t0 = time.perf_counter()
    with profiled() as prof:
        rc = firefly_eval(command)
    wall = time.perf_counter() - t0
    events = prof.events()
    ranked = ops_by_time(events)
    ops = ranked[:20]
    result = {"command": command, "returncode": rc, "wall_s": round(wall, 3),
              "clock": "device" if torch.cuda.is_available() else "cpu",
              "ms_in_ops": round(sum(r["ms"] for r in ranked), 3), "top": ops, "ranges": range_seconds(events, names)}
    if torch.cuda.is_available():
        result["idle"] = device_idle(events, steps=1)
    print(f"\nfirefly-eval {' '.join(command[:1])}: {wall:.1f} s wall, {result['ms_in_ops'] / 1000:.1f} s of "
          f"{result['clock']} time in ops (exit {rc})")
    if "idle" in result:
        print(f"GPU idle between kernels: {result['idle']['ms_per_step'] / 1000:.1f} s; by the CPU op running:")
        for op, ms in result["idle"]["by_op"].items():
            print(f"  {op[:70]:<70} {ms / 1000:>8.2f} s")
    print("wall time inside each range (inclusive):")
    for name, r in result["ranges"].items():
        print(f"  {name[:70]:<70} {r['s']:>8.2f} s {r['calls']:>8} calls")
    print("ops taking the most time:")
    for row in ops:
        print(f"  {row['op'][:70]:<70} {row['ms'] / 1000:>8.2f} s {row['calls']:>8} calls")
        for site in row["sites"] if row is ops[0] or row["ms"] > 0.05 * ops[0]["ms"] else []:
            print(f"      {site['ms'] / 1000:>7.2f} s {site['calls']:>6} calls  {site['shapes']}  < {site['callers'][:90]}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    sys.exit(rc)


if __name__ == "__main__":
    main()
