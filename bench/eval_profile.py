"""Where an evaluation command's time goes: any `firefly-eval` command run in this process under torch.profiler.

    python bench/eval_profile.py --json prof.json -- cmmlu --ckpt /tmp/l7 --data-dir DATA/cmmlu --subjects agronomy anatomy -o /tmp/c.json

Prints the command's wall time, the time the device spent in kernels, the ops that took the most of it and, on a
GPU, how long the GPU sat idle between kernels and which CPU op was running in those gaps
(`op_profile.device_idle`): the question for CMMLU, whose inference loop takes 117 s of a 152.6 s run while
the model's arithmetic is about a fifth of that (bench/NOTES.md). Time spent in plain Python (OpenCompass's
prompt building, our bookkeeping) runs no op, so its gaps are charged to "(no CPU op)" unless `--stack` records
Python frames too.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from op_profile import device_idle, profiled  # noqa: E402


def ops_by_time(events) -> list[dict]:
    """Every op with its self time on the device (on the CPU without a GPU) and call count, most time first."""
    cuda = torch.cuda.is_available()
    totals: dict[str, list] = {}
    for e in events:
        if e.device_type.name != "CPU":
            continue
        us = e.self_device_time_total if cuda else e.self_cpu_time_total
        row = totals.setdefault(e.name, [0.0, 0])
        row[0], row[1] = row[0] + us / 1000, row[1] + 1
    ranked = sorted(totals.items(), key=lambda kv: -kv[1][0])
    return [{"op": name, "ms": round(ms, 3), "calls": calls} for name, (ms, calls) in ranked]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", type=Path, help="also write the numbers here")
    ap.add_argument("--stack", action="store_true", help="record Python frames too (slower, larger)")
    ap.add_argument("command", nargs=argparse.REMAINDER, help="after --: a firefly-eval command and its arguments")
    args = ap.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        ap.error("give a firefly-eval command after --")
    from firefly_eval.cli import main as firefly_eval

    t0 = time.perf_counter()
    with profiled(with_stack=args.stack) as prof:
        rc = firefly_eval(command)
    wall = time.perf_counter() - t0
    events = prof.events()
    ranked = ops_by_time(events)
    ops = ranked[:20]
    result = {"command": command, "returncode": rc, "wall_s": round(wall, 3),
              "clock": "device" if torch.cuda.is_available() else "cpu",
              "ms_in_ops": round(sum(r["ms"] for r in ranked), 3), "top": ops}
    if torch.cuda.is_available():
        result["idle"] = device_idle(events, steps=1)
    print(f"\nfirefly-eval {' '.join(command[:1])}: {wall:.1f} s wall, {result['ms_in_ops'] / 1000:.1f} s of "
          f"{result['clock']} time in ops (exit {rc})")
    if "idle" in result:
        print(f"GPU idle between kernels: {result['idle']['ms_per_step'] / 1000:.1f} s; by the CPU op running:")
        for op, ms in result["idle"]["by_op"].items():
            print(f"  {op[:70]:<70} {ms / 1000:>8.2f} s")
    print("ops taking the most time:")
    for row in ops:
        print(f"  {row['op'][:70]:<70} {row['ms'] / 1000:>8.2f} s {row['calls']:>8} calls")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    sys.exit(rc)


if __name__ == "__main__":
    main()
