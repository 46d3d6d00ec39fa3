"""NF4 dequantisation and the frozen base's product layouts at one model's shapes, per call, on one device.

Dequantisation of one weight (double-quant absmax included), GB/s counted as the 4-bit read plus the 16-bit write:
- `bitsandbytes`: `bitsandbytes.functional.dequantize_4bit`, its CUDA kernel;
- `nf4_weight`: `nf4_linear.nf4_weight` compiled by torch.compile with the absmax undone, as the compiled layers
  run it (bitsandbytes' kernel called from compiled code);
- `inductor`: the same dequantisation written as torch ops (`torch_ops_dequant`, what the compiled layers ran until
  the seventeenth session) compiled by torch.compile;
- `copy`: a clone of the 16-bit weight (4 bytes moved per weight), the card's streaming rate.

Products (bf16, `--tokens` rows), TFLOP/s: the forward `x @ W^T` and the backward's input gradient `g @ W` of each
shape, and the same with q/k/v and gate/up as one product (`fused`: the weights side by side, so one product
instead of three or two, and in the backward one product over the summed inner dimension instead of a sum of
products).

    python bench/nf4_dequant_speed.py --shape configs/shapes/llama2-13b.json
    python bench/nf4_dequant_speed.py --hidden 64 --intermediate 128 --tokens 32 --device cpu   # a smoke run
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from gemm_rates import timed


def torch_ops_dequant(packed: torch.Tensor, absmax: torch.Tensor, code: torch.Tensor, blocksize: int,
                      shape: torch.Size) -> torch.Tensor:
    """NF4 dequantisation in torch ops, bitsandbytes' weights bit for bit: `code[4-bit index] * absmax` of its block
    in float32 (high nibble first), rounded once to bf16 (whole blocks; `absmax` may be padded, as `absmax_of`'s)."""
    flat = packed.view(-1)
    values = code[torch.stack([flat >> 4, flat & 15], dim=-1).view(-1)[:shape.numel()].int()].view(-1, blocksize)
    return (values * absmax[:values.shape[0]].view(-1, 1)).to(torch.bfloat16).view(shape)


def dequant_rows(n: int, k: int, device: torch.device, repeats: int) -> dict:
    import bitsandbytes.functional as bf

    from firefly_train.nf4_linear import absmax_of, nf4_weight

    w = torch.randn(n, k, device=device, dtype=torch.bfloat16)
    q, st = bf.quantize_4bit(w, quant_type="nf4", compress_statistics=True)
    shape, numel = st.shape, st.shape.numel()
    ref = bf.dequantize_4bit(q, st)

    ways = {"bitsandbytes": lambda: bf.dequantize_4bit(q, st),
            "nf4_weight": torch.compile(lambda: nf4_weight(q, absmax_of(st), st.blocksize, list(shape),
                                                           torch.bfloat16, w)),
            "inductor": torch.compile(lambda: torch_ops_dequant(q, absmax_of(st), st.code, st.blocksize, shape)),
            "copy": w.clone}
    rows = {}
    for name, fn in ways.items():
        if name != "copy" and not torch.equal(fn().view(shape), ref):
            raise SystemExit(f"{name}: not bitsandbytes' weights")
        ms = timed(fn, device, repeats)
        rows[name] = {"ms": ms, "GB/s": numel * (4 if name == "copy" else 2.5) / ms / 1e6}
    return rows


def product_rows(tokens: int, h: int, i: int, device: torch.device, repeats: int) -> dict:
    def rate(k, n):
        """A linear layer of k inputs and n outputs: forward x[tokens, k] @ W^T, backward g[tokens, n] @ W."""
        x, g = (torch.randn(tokens, d, device=device, dtype=torch.bfloat16) for d in (k, n))
        w = torch.randn(n, k, device=device, dtype=torch.bfloat16)  # stored (out, in), as nn.Linear's
        fwd, bwd = timed(lambda: x @ w.t(), device, repeats), timed(lambda: g @ w, device, repeats)
        flops = 2 * tokens * k * n
        return {"forward ms": fwd, "forward TFLOP/s": flops / fwd / 1e9, "backward ms": bwd,
                "backward TFLOP/s": flops / bwd / 1e9}

    return {"q/k/v/o": rate(h, h), "gate/up": rate(h, i), "down": rate(i, h), "q/k/v fused": rate(h, 3 * h),
            "gate/up fused": rate(h, 2 * i)}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", type=Path, help="a model shape (configs/shapes/*.json): hidden and intermediate")
    ap.add_argument("--hidden", type=int, default=4096)
    ap.add_argument("--intermediate", type=int, default=11008)
    ap.add_argument("--tokens", type=int, default=8192)
    ap.add_argument("--repeats", type=int, default=50)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    if args.shape:
        spec = json.loads(args.shape.read_text())
        args.hidden, args.intermediate = spec["hidden_size"], spec["intermediate_size"]
    device = torch.device(args.device)
    h, i = args.hidden, args.intermediate
    deq = {"q/k/v/o": dequant_rows(h, h, device, args.repeats),
           "gate/up": dequant_rows(i, h, device, args.repeats)}
    print(f"dequantisation, ms per weight (GB/s); hidden {h}, intermediate {i}")
    ways = list(deq["gate/up"])
    print(f"{'weight':<10}" + "".join(f"{w:>24}" for w in ways))
    for name, r in deq.items():
        print(f"{name:<10}" + "".join(f"{r[w]['ms']:>14.4f} ({r[w]['GB/s']:>6.0f})" for w in ways))
    products = product_rows(args.tokens, h, i, device, args.repeats)
    print(f"\nbf16 products, {args.tokens} rows: ms (TFLOP/s)")
    for name, r in products.items():
        print(f"{name:<14} forward {r['forward ms']:.3f} ({r['forward TFLOP/s']:.0f})   "
              f"backward {r['backward ms']:.3f} ({r['backward TFLOP/s']:.0f})")
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                         "dequantise": deq, "products": products}, indent=2))


if __name__ == "__main__":
    main()
