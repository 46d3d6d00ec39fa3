"""What one frozen-base linear layer costs per pass, by way of computing it: the arithmetic-limit question of the
training-speed issue, measured on the card instead of assumed.

For each linear shape of a decoder layer (Llama-2-7B: q/k/v/o 4096x4096, gate/up 4096->11008, down 11008->4096)
at `--tokens` rows, times one forward product five ways and prints milliseconds and TFLOP/s, then the sum over
one decoder layer:

- `bf16 mm`: the dense product with the weight already in bf16 (the arithmetic limit's assumption);
- `nf4 dequant`: bitsandbytes' NF4 double-quant dequantisation of the weight alone;
- `nf4 matmul`: `bitsandbytes.matmul_4bit`, dequantisation + product, what QLoRA runs in every pass;
- `fp8 rowwise`: `torch._scaled_mm` with e4m3 operands, one scale per row of x and per output channel, x
  quantised in the timed region (weights quantised once, outside it); FP8 GPUs (Ada, Hopper) and the CPU;
- `fp8 tensorwise`: the same with one scale for x and one for the weight (`fp8_base_products`' two kinds);
- `lora r=R`: the LoRA branch `(x @ A^T) @ B^T` added to an output, rank `--rank`.

    python bench/gemm_rates.py                       # the 7B shapes, 8192 rows (micro-batch 8 x 1024)
    python bench/gemm_rates.py --tokens 64 --hidden 96 --intermediate 192 --device cpu   # a smoke run
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from firefly_train.nf4_linear import scaled_mm, to_fp8


def timed(fn, device: torch.device, repeats: int) -> float:
    """Milliseconds per call, after two warm-up calls."""
    for _ in range(2):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return 1000 * (time.perf_counter() - t0) / repeats


def fp8_mm(x: torch.Tensor, w8: torch.Tensor, w_scale: torch.Tensor, rowwise: bool) -> torch.Tensor:
    """x (bf16, M x K) @ w^T with e4m3 operands: x quantised here, w beforehand (`to_fp8`, the same scaling)."""
    x8, x_scale = to_fp8(x, rowwise)
    return scaled_mm(x8, x_scale, w8, w_scale, torch.bfloat16)


def shape_rows(tokens: int, k: int, n: int, rank: int, device: torch.device, repeats: int) -> dict:
    import bitsandbytes as bnb
    import bitsandbytes.functional as bf

    g = torch.Generator(device=device).manual_seed(0)
    x = torch.randn(tokens, k, device=device, dtype=torch.bfloat16, generator=g)
    w = (torch.randn(n, k, device=device, dtype=torch.bfloat16, generator=g) / k ** 0.5)
    q, state = bf.quantize_4bit(w, quant_type="nf4", compress_statistics=True)
    a = torch.randn(rank, k, device=device, dtype=torch.bfloat16, generator=g) / k ** 0.5
    b = torch.randn(n, rank, device=device, dtype=torch.bfloat16, generator=g) / rank ** 0.5
    out = torch.empty(tokens, n, device=device, dtype=torch.bfloat16)
    flops = 2 * tokens * k * n
    rows = {"bf16 mm": timed(lambda: x @ w.t(), device, repeats),
            "nf4 dequant": timed(lambda: bf.dequantize_4bit(q, state), device, repeats),
            "nf4 matmul": timed(lambda: bnb.matmul_4bit(x, q.t(), quant_state=state), device, repeats),
            "lora": timed(lambda: torch.addmm(out, x @ a.t(), b.t()), device, repeats)}
    ref = (x @ w.t()).float()
    for kind, rowwise in (("rowwise", True), ("tensorwise", False)):
        try:
            w8, ws = to_fp8(w, rowwise)
            rows[f"fp8 {kind}"] = timed(lambda: fp8_mm(x, w8, ws, rowwise), device, repeats)
            rows[f"fp8 {kind} relative error"] = float((fp8_mm(x, w8, ws, rowwise).float() - ref).norm()
                                                       / ref.norm())
        except (RuntimeError, NotImplementedError) as e:  # no FP8 GEMM on this device
            rows[f"fp8 {kind}"] = None
            rows[f"fp8 {kind} unavailable"] = str(e).splitlines()[0][:120]
    rows["tflops"] = {name: flops / ms / 1e9 for name, ms in rows.items()
                      if name in ("bf16 mm", "nf4 matmul", "fp8 rowwise", "fp8 tensorwise") and ms}
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokens", type=int, default=8192)
    ap.add_argument("--hidden", type=int, default=4096)
    ap.add_argument("--intermediate", type=int, default=11008)
    ap.add_argument("--rank", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    device = torch.device(args.device)
    h, i = args.hidden, args.intermediate
    layer = {"q/k/v/o": (h, h, 4), "gate/up": (h, i, 2), "down": (i, h, 1)}  # (in, out, linears per layer)
    results = {name: shape_rows(args.tokens, k, n, args.rank, device, args.repeats)
               for name, (k, n, _) in layer.items()}
    ways = ("bf16 mm", "nf4 dequant", "nf4 matmul", "fp8 rowwise", "fp8 tensorwise", "lora")
    print(f"{args.tokens} rows, {torch.cuda.get_device_name(0) if device.type == 'cuda' else 'cpu'}; ms per call "
          "(TFLOP/s)")
    print(f"{'shape':<10}" + "".join(f"{w:>22}" for w in ways))
    for name, r in results.items():
        cells = ["n/a" if r[w] is None else f"{r[w]:.3f}" + (f" ({r['tflops'][w]:.0f})" if w in r["tflops"] else "")
                 for w in ways]
        print(f"{name:<10}" + "".join(f"{c:>22}" for c in cells))
    total = {w: None if any(r[w] is None for r in results.values())
             else sum(r[w] * layer[name][2] for name, r in results.items()) for w in ways}
    print(f"{'layer':<10}" + "".join(f"{'n/a' if t is None else f'{t:.3f}':>22}" for t in total.values()))
    for kind in ("rowwise", "tensorwise"):
        if f"fp8 {kind} relative error" in results["down"]:
            print(f"fp8 {kind} relative error against bf16: " + ", ".join(
                f"{n} {r[f'fp8 {kind} relative error']:.4f}" for n, r in results.items()))
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "shapes": results,
                                         "layer_ms": total}, indent=2))


if __name__ == "__main__":
    main()
