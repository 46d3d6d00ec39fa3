"""SDPA with an explicit mask at CMMLU's stem-chunk shapes: the time of each backend on a new shape and on a
shape it has seen, and which backend the default picks.

`PrefixCachedPPL` runs every chunk of stems (batch and width change from chunk to chunk) against a cached
few-shot prefix with a 4-D boolean mask. A backend that builds an execution plan per new shape (cuDNN's) pays
that on nearly every chunk; one that does not pays nothing. Prints one row per backend: milliseconds per call
(wall, synchronised) on the first call of each shape and on repeated calls, and the largest difference from
the math backend in float32 (the same inputs).

    python bench/sdpa_backends.py --shapes 12 --json sdpa.json
"""
from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

BACKENDS = {"default": None, "cudnn": SDPBackend.CUDNN_ATTENTION, "efficient": SDPBackend.EFFICIENT_ATTENTION,
            "math": SDPBackend.MATH}


def chunk_inputs(batch: int, prefix: int, width: int, heads: int, head_dim: int, device, dtype, seed: int):
    """q for `width` stem positions, k/v for prefix + stem, and the mask transformers builds: the prefix seen by
    all, causal within the stem, each row's padding (random stem lengths) hidden as keys."""
    g = torch.Generator(device="cpu").manual_seed(seed)
    q = torch.randn(batch, heads, width, head_dim, generator=g).to(device, dtype)
    k = torch.randn(batch, heads, prefix + width, head_dim, generator=g).to(device, dtype)
    v = torch.randn(batch, heads, prefix + width, head_dim, generator=g).to(device, dtype)
    lengths = torch.randint(1, width + 1, (batch,), generator=g)
    lengths[0] = width
    cols = torch.arange(prefix + width)
    rows = torch.arange(width)[:, None] + prefix
    mask = (cols[None, None] <= rows[None]) & (cols[None, None] < (prefix + lengths)[:, None, None])
    return q, k, v, mask[:, None].to(device)


def timed(fn, device) -> tuple[float, torch.Tensor]:
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    out = fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) * 1000, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shapes", type=int, default=12, help="distinct (batch, prefix, width) shapes")
    ap.add_argument("--repeats", type=int, default=5, help="calls per shape after the first")
    ap.add_argument("--heads", type=int, default=32)
    ap.add_argument("--head-dim", type=int, default=128)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    rng = random.Random(0)
    shapes = [(rng.randint(32, 56), rng.randint(500, 900), rng.randint(60, 160)) for _ in range(args.shapes)]
    results = {}
    for name, backend in BACKENDS.items():
        first, again, diff = [], [], 0.0
        for i, (b, p, w) in enumerate(shapes):
            q, k, v, mask = chunk_inputs(b, p, w, args.heads, args.head_dim, device, dtype, seed=i)

            def call():
                if backend is None:
                    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
                with sdpa_kernel([backend]):
                    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
            try:
                ms, out = timed(call, device)
            except RuntimeError as e:  # a backend that refuses these inputs
                first = None
                results[name] = {"error": str(e).splitlines()[0]}
                break
            first.append(ms)
            again += [timed(call, device)[0] for _ in range(args.repeats)]
            with sdpa_kernel([SDPBackend.MATH]):
                ref = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), attn_mask=mask)
            diff = max(diff, (out.float() - ref).abs().max().item())
        if first is not None:
            results[name] = {"first_call_ms": statistics.median(first), "first_call_ms_max": max(first),
                             "repeat_ms": statistics.median(again), "max_abs_diff_vs_math_fp32": diff}
    if device.type == "cuda":  # which kernel the default runs
        q, k, v, mask = chunk_inputs(*shapes[0], args.heads, args.head_dim, device, dtype, seed=0)
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
            F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
            torch.cuda.synchronize()
        results["default_kernels"] = sorted({e.name for e in prof.events() if e.device_type.name == "CUDA"})
    print(f"{len(shapes)} shapes (batch 32-56, prefix 500-900, width 60-160), {args.heads} heads x {args.head_dim}, "
          f"{dtype}, {device}")
    print(f"{'backend':<10} {'first call ms (median / max)':>30} {'repeat ms':>10} {'max |diff| vs math':>19}")
    for name in BACKENDS:
        r = results[name]
        if "error" in r:
            print(f"{name:<10} refused: {r['error'][:90]}")
            continue
        print(f"{name:<10} {r['first_call_ms']:>20.2f} / {r['first_call_ms_max']:>7.2f} {r['repeat_ms']:>10.2f} "
              f"{r['max_abs_diff_vs_math_fp32']:>19.3g}")
    if "default_kernels" in results:
        print("default runs:", "; ".join(results["default_kernels"]))
    if args.json:
        args.json.write_text(json.dumps({"shapes": shapes, "results": results}, indent=1))


if __name__ == "__main__":
    main()
