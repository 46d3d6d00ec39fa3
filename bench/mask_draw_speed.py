"""The LoRA dropout's packed keep masks (`fused_lora.keep_bits`) at a training step's shapes: each way of drawing
them, its time, and the share it drops.

Ways: the seventeenth session's float32 `rand` then a compiled packing kernel (`rand_keep_bits`, as the 13B
recipe's compiled layers ran it with fallback_random: the eager draw, then inductor's pack), the same uncompiled,
`nn.Dropout`'s draw (a bf16 `rand_like`, unpacked, for scale), and on a GPU `mask_kernel`'s one Triton kernel
(Philox, packed as drawn). Each width is one LoRA input (13B: 13,824 for down_proj, 5,120 for the others).

    python bench/mask_draw_speed.py --tokens 8192 --widths 13824 5120 --json masks.json
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from step_attention_speed import time_ms

from firefly_train.fused_lora import MASK_RESOLUTION, mask_kernel, rand_keep_bits, unpack_bits


def ways(device: torch.device) -> dict:
    found = {"rand + compiled pack": torch.compile(rand_keep_bits, options={"fallback_random": True}),
             "rand + pack, uncompiled": rand_keep_bits}
    if device.type == "cuda" and mask_kernel is not None:
        found["mask_kernel"] = lambda shape, drop, dev: torch.ops.firefly.keep_bits(
            torch.randint(1 << 62, (1,), device=dev), shape, drop)
    return found


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokens", type=int, default=8192, help="tokens a micro-batch (8 x 1,024)")
    ap.add_argument("--widths", type=int, nargs="+", default=[13824, 5120])
    ap.add_argument("--p", type=float, default=0.05, help="dropout probability (the recipes' lora.dropout)")
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    drop = round(args.p * MASK_RESOLUTION)
    results = {}
    print(f"{device}, torch {torch.__version__}, p {args.p} resolved to {drop}/{MASK_RESOLUTION}")
    print(f"{'width':>6} {'way':<36} {'ms':>8} {'x first':>8} {'dropped share':>14}")
    for width in args.widths:
        shape = [args.tokens, width // 8]
        rows = {}
        for name, fn in ways(device).items():
            dropped = 1 - unpack_bits(fn(shape, drop, device)).float().mean().item()
            rows[name] = {"ms": round(time_ms(fn, (shape, drop, device), device, args.iters), 4),
                          "dropped_share": round(dropped, 5)}
        x = torch.empty(args.tokens, width, device=device, dtype=torch.bfloat16)
        rows["bf16 rand_like (nn.Dropout's draw)"] = {
            "ms": round(time_ms(torch.rand_like, (x,), device, args.iters), 4), "dropped_share": None}
        first = next(iter(rows.values()))["ms"]
        for name, r in rows.items():
            r["x_first"] = round(r["ms"] / first, 3)
            share = "-" if r["dropped_share"] is None else f"{r['dropped_share']:.5f}"
            print(f"{width:>6} {name:<36} {r['ms']:>8.4f} {r['x_first']:>8.3f} {share:>14}")
        results[str(width)] = rows
        torch._dynamo.reset()  # each width compiles for its own static shape
    if args.json:
        args.json.write_text(json.dumps({"device": str(device), "torch": torch.__version__, "tokens": args.tokens,
                                         "p": args.p, "drop": drop, "widths": results}, indent=1))


if __name__ == "__main__":
    main()
