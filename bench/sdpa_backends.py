"""SDPA with an explicit mask at CMMLU's stem-chunk shapes: the time of each backend on a new shape and on a
shape it has seen, and which backend the default picks.

`PrefixCachedPPL` runs every chunk of stems (batch and width change from chunk to chunk) against a cached
few-shot prefix with a 4-D boolean mask. A backend that builds an execution plan per new shape (cuDNN's) pays
that on nearly every chunk; one that does not pays nothing. Prints one row per backend: milliseconds per call
(wall, synchronised) on repeated calls, the largest difference from the math backend in float32 (the same
inputs), and the first call on each shape: random new shapes, then the first one again and with its batch,
prefix or width moved by one (which change makes a backend plan again).

    python bench/sdpa_backends.py --shapes 6 --json sdpa.json
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

# No separate cuDNN row: where the default is cuDNN's kernel (printed at the end), the default's first calls are
# its planning, and a cuDNN row after it would only find the plans made.
BACKENDS = {"default": None, "efficient": SDPBackend.EFFICIENT_ATTENTION, "math": SDPBackend.MATH}


def chunk_inputs(batch: int, prefix: int, width: int, heads: int, head_dim: int, device, dtype, seed: int):
    """q for `width` stem positions, k/v for prefix + stem, and the mask transformers builds: the prefix seen by
    all, causal within the stem, each row's padding (random stem lengths) hidden as keys. Drawn on the device."""
    g = torch.Generator(device=device).manual_seed(seed)
    q, k, v = (torch.randn(batch, heads, n, head_dim, generator=g, device=device, dtype=dtype)
               for n in (width, prefix + width, prefix + width))
    lengths = torch.randint(1, width + 1, (batch,), generator=g, device=device)
    lengths[0] = width
    cols = torch.arange(prefix + width, device=device)
    rows = torch.arange(width, device=device)[:, None] + prefix
    mask = (cols[None, None] <= rows[None]) & (cols[None, None] < (prefix + lengths)[:, None, None])
    return q, k, v, mask[:, None]


def timed(fn, device) -> tuple[float, torch.Tensor]:
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    out = fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) * 1000, out


def shape_cases(n: int) -> list[tuple[str, tuple[int, int, int]]]:
    """`n` random (batch, prefix, width) shapes, then the first one again and with one dimension moved by one:
    which change makes a backend plan again."""
    rng = random.Random(0)
    shapes = [(rng.randint(32, 56), rng.randint(500, 900), rng.randint(60, 160)) for _ in range(n)]
    b, p, w = shapes[0]
    return ([(f"new {i}", s) for i, s in enumerate(shapes)] + [("seen", (b, p, w)), ("batch+1", (b + 1, p, w)),
            ("prefix+1", (b, p + 1, w)), ("width+1", (b, p, w + 1))])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shapes", type=int, default=6, help="distinct (batch, prefix, width) shapes")
    ap.add_argument("--repeats", type=int, default=3, help="calls per shape after the first")
    ap.add_argument("--heads", type=int, default=32)
    ap.add_argument("--head-dim", type=int, default=128)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    cases = shape_cases(args.shapes)
    rows = {name: {"first_ms": {}, "repeat_ms": [], "max_abs_diff_vs_math_fp32": 0.0} for name in BACKENDS}
    for i, (case, shape) in enumerate(cases):
        q, k, v, mask = chunk_inputs(*shape, args.heads, args.head_dim, device, dtype, seed=i)
        with sdpa_kernel([SDPBackend.MATH]):
            ref = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), attn_mask=mask)
        for name, backend in BACKENDS.items():
            r = rows[name]
            if "error" in r:
                continue

            def call():
                if backend is None:
                    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
                with sdpa_kernel([backend]):
                    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
            try:
                ms, out = timed(call, device)
            except RuntimeError as e:  # a backend that refuses these inputs
                r["error"] = str(e).splitlines()[0]
                continue
            r["first_ms"][case] = round(ms, 3)
            r["repeat_ms"] += [timed(call, device)[0] for _ in range(args.repeats)]
            r["max_abs_diff_vs_math_fp32"] = max(r["max_abs_diff_vs_math_fp32"], (out.float() - ref).abs().max().item())
    result = {"cases": cases, "backends": rows}
    if device.type == "cuda":  # which kernel the default runs
        q, k, v, mask = chunk_inputs(*cases[0][1], args.heads, args.head_dim, device, dtype, seed=0)
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
            F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
            torch.cuda.synchronize()
        result["default_kernels"] = sorted({e.name for e in prof.events() if e.device_type.name == "CUDA"})
    print(f"{dtype}, {device}, {args.heads} heads x {args.head_dim}; (batch, prefix, width): "
          + ", ".join(f"{c} {s}" for c, s in cases))
    names = [c for c, _ in cases]
    print(f"{'backend':<10} {'repeat ms':>9} {'|diff| vs math':>15}  first call ms: " + " ".join(f"{n:>9}" for n in names))
    for name, r in rows.items():
        if "error" in r:
            print(f"{name:<10} refused: {r['error'][:100]}")
            continue
        firsts = " ".join(f"{r['first_ms'].get(n, float('nan')):>9.2f}" for n in names)
        print(f"{name:<10} {statistics.median(r['repeat_ms']):>9.2f} {r['max_abs_diff_vs_math_fp32']:>15.3g}  "
              f"{'':>14} {firsts}")
    if "default_kernels" in result:
        print("default runs:", "; ".join(result["default_kernels"]))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
