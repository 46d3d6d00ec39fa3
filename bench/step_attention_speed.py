"""One decoding step's attention at the generate stage's shape: each way of computing it, its time, how fast it reads
the cache, whether it gives the same bits when run again, and how far it is from SDPA's memory-efficient kernel (on
the CPU, which has none: from the first way that ran).

A step has one query per row against the whole static cache (left padding hidden by the mask), so its time is a
read of the cache's keys and values. The 7B's 32 layers each run it once a step; at 130 rows and 736 positions a
layer's keys and values are 1.5 GiB. Ways: SDPA under each backend, the decoder's matrix-product step
(`firefly_eval.step_attention`) eager and compiled, and a candidate that computes the scores and the weighted sum
as compiled reductions (one fused read of each, float32 scores) should cuBLAS's one-row products read slowly.

    python bench/step_attention_speed.py --json step.json
"""
from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import time
import types
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from firefly_eval.step_attention import step_attention


def step_inputs(rows: int, heads: int, kv_heads: int, keys: int, dim: int, device, dtype):
    """A query per row, a full cache, and a boolean mask hiding each row's left padding (up to half the cache)."""
    g = torch.Generator(device).manual_seed(0)
    q = torch.randn(rows, heads, 1, dim, device=device, dtype=dtype, generator=g)
    k, v = (torch.randn(rows, kv_heads, keys, dim, device=device, dtype=dtype, generator=g) for _ in range(2))
    pads = torch.randint(0, keys // 2, (rows,), device=device, generator=g)
    return q, k, v, (torch.arange(keys, device=device) >= pads[:, None])[:, None, None, :]


def reduction_step(query, key, value, mask):
    """The candidate: scores and the weighted sum as elementwise products reduced over a dimension (float32)."""
    rows, heads, _, dim = query.shape
    kv_heads = key.shape[1]
    grouped = query.reshape(rows, kv_heads, heads // kv_heads, 1, dim).float()
    scores = (grouped * key[:, :, None].float()).sum(-1) * dim ** -0.5
    scores = scores.masked_fill(~mask[:, :, None, 0], torch.finfo(scores.dtype).min)
    probs = torch.softmax(scores, dim=-1)
    return (probs[..., None] * value[:, :, None].float()).sum(-2).to(value.dtype).reshape(rows, 1, heads, dim)


def ways(kv_groups: int) -> dict:
    module = types.SimpleNamespace(num_key_value_groups=kv_groups, is_causal=True, training=False)

    def sdpa(backend):
        def call(q, k, v, mask):
            ks, vs = (t.repeat_interleave(kv_groups, dim=1) for t in (k, v)) if kv_groups > 1 else (k, v)
            with sdpa_kernel([backend]) if backend else contextlib.nullcontext():
                return F.scaled_dot_product_attention(q, ks, vs, attn_mask=mask).transpose(1, 2)
        return call

    def matmul(q, k, v, mask):
        return step_attention(module, q, k, v, mask)[0]
    return {"sdpa efficient": sdpa(SDPBackend.EFFICIENT_ATTENTION), "sdpa cudnn": sdpa(SDPBackend.CUDNN_ATTENTION),
            "sdpa default": sdpa(None), "matmul step": matmul, "matmul step, compiled": torch.compile(matmul),
            "reduction, compiled": torch.compile(reduction_step)}


def time_ms(fn, args, device, iters: int) -> float:
    """Median milliseconds a call, over `iters` calls after two warm-up calls."""
    for _ in range(2):
        fn(*args)
    times = []
    if device.type != "cuda":
        for _ in range(iters):
            t0 = time.perf_counter()
            fn(*args)
            times.append((time.perf_counter() - t0) * 1000)
        return statistics.median(times)
    for _ in range(iters):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn(*args)
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=130)
    ap.add_argument("--heads", type=int, default=32)
    ap.add_argument("--kv-heads", type=int, default=32)
    ap.add_argument("--keys", type=int, default=736, help="cache positions (prompt + new tokens, rounded)")
    ap.add_argument("--head-dim", type=int, default=128)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    inputs = step_inputs(args.rows, args.heads, args.kv_heads, args.keys, args.head_dim, device, dtype)
    cache_bytes = 2 * inputs[1].numel() * inputs[1].element_size()
    reference = reference_name = None
    rows = {}
    for name, fn in ways(args.heads // args.kv_heads).items():
        try:
            first = fn(*inputs)
        except RuntimeError as e:  # a backend that refuses these inputs
            rows[name] = {"error": str(e).splitlines()[0][:200]}
            continue
        if reference is None:  # SDPA's memory-efficient kernel, or the first way that ran where it refuses (CPU)
            reference, reference_name = first, name
        ms = time_ms(fn, inputs, device, args.iters)
        rows[name] = {"ms": round(ms, 4), "cache_TB_per_s": round(cache_bytes / ms / 1e9, 3),
                      "repeats_bitwise": bool(torch.equal(first, fn(*inputs))),
                      "max_abs_diff_vs_reference": (first.float() - reference.float()).abs().max().item()}
    print(f"{device}, {dtype}: {args.rows} rows x {args.heads} heads ({args.kv_heads} key/value) x {args.keys} "
          f"positions x {args.head_dim}; keys + values {cache_bytes / 2**30:.2f} GiB a layer")
    print(f"{'way':<24} {'ms':>8} {'TB/s':>6} {'repeats':>8} {'|d| vs ' + reference_name:>22}")
    for name, r in rows.items():
        if "error" in r:
            print(f"{name:<24} refused: {r['error'][:90]}")
        else:
            print(f"{name:<24} {r['ms']:>8.3f} {r['cache_TB_per_s']:>6.2f} {str(r['repeats_bitwise']):>8} "
                  f"{r['max_abs_diff_vs_reference']:>22.3g}")
    if args.json:
        args.json.write_text(json.dumps({"args": vars(args) | {"json": str(args.json)}, "device": str(device),
                                              "reference": reference_name, "ways": rows}, indent=1))


if __name__ == "__main__":
    main()
