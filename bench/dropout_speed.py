"""A LoRA input's dropout as a compiled decoder layer runs it, at a training shape: the MLP's `silu(gate) * up`
with the down_proj LoRA input's dropout (the largest elementwise kernel of a 13B step, bench/NOTES.md), forward
and backward, with the mask drawn by inductor inside the fused kernel, by PyTorch's eager dropout kernel
(`compile_eager_dropout`: inductor's fallback_random), without dropout (the floor), and uncompiled.

Inductor without `rand4x` (pytorch/pytorch#184377; the 2.13 installed here has it) evaluates Philox once per
element and keeps one of its four words; the eager kernel keeps all four but adds a pass over the activation and
writes a mask. Which costs less is what this measures.
Each width is one LoRA input (13B: 13,824 for down_proj, 5,120 for the others; 7B: 11,008 and 4,096).

A second table times the packed keep masks of `lora.fuse_shared_inputs` (`fused_lora.keep_bits`), drawn alone:
float32 `rand` then a compiled packing kernel (`rand_keep_bits` with fallback_random, the seventeenth session's
GPU path and the CPU's now), the same uncompiled, on a GPU `mask_kernel`'s one Triton kernel (Philox, packed as
drawn), and a bf16 `rand_like` (nn.Dropout's draw, unpacked) for scale.

    python bench/dropout_speed.py --tokens 8192 --widths 13824 5120 --json dropout.json
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
import torch.nn.functional as F

from step_attention_speed import time_ms

from firefly_train.fused_lora import MASK_RESOLUTION, mask_kernel, rand_keep_bits, unpack_bits


def mlp_input(p: float):
    def f(gate, up):
        h = F.silu(gate) * up  # down_proj's base product reads h, its LoRA branch the dropped h
        return h, F.dropout(h, p, training=True) if p else h
    return f


def ways(p: float) -> dict:
    return {"inductor masks": torch.compile(mlp_input(p), options={"fallback_random": False}),
            "eager masks": torch.compile(mlp_input(p), options={"fallback_random": True}),
            "no dropout": torch.compile(mlp_input(0.0)),
            "uncompiled": mlp_input(p)}


def forward_backward(fn, gate, up, grads):
    h, dropped = fn(gate, up)
    torch.autograd.backward((h, dropped), grads)
    return dropped


def inductor_draws_4x() -> bool | None:
    """Whether this PyTorch's inductor keeps all four Philox words (`rand4x`); None without Triton."""
    try:
        from torch._inductor.runtime import triton_helpers
    except ImportError:
        return None
    return hasattr(triton_helpers, "rand4x")


def mask_ways(device: torch.device) -> dict:
    found = {"rand + compiled pack": torch.compile(rand_keep_bits, options={"fallback_random": True}),
             "rand + pack, uncompiled": rand_keep_bits}
    if device.type == "cuda" and mask_kernel is not None:
        found["mask_kernel"] = lambda shape, drop, dev: torch.ops.firefly.keep_bits(
            torch.randint(1 << 62, (1,), device=dev), shape, drop)
    return found


def packed_masks(args, device: torch.device) -> dict:
    """The packed-mask table: per width, each way's ms and dropped share."""
    drop = round(args.p * MASK_RESOLUTION)
    print(f"packed masks (lora.fuse_shared_inputs), p {args.p} resolved to {drop}/{MASK_RESOLUTION}")
    print(f"{'width':>6} {'way':<36} {'ms':>8} {'x first':>8} {'dropped share':>14}")
    results = {}
    for width in args.widths:
        shape, rows = [args.tokens, width // 8], {}
        for name, fn in mask_ways(device).items():
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
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokens", type=int, default=8192, help="tokens a micro-batch (8 x 1,024)")
    ap.add_argument("--widths", type=int, nargs="+", default=[13824, 5120])
    ap.add_argument("--p", type=float, default=0.05, help="dropout probability (the recipes' lora.dropout)")
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    results, draws_4x = {}, inductor_draws_4x()
    print(f"{device}, {dtype}, torch {torch.__version__}, inductor keeps four Philox words: {draws_4x}")
    print(f"{'width':>6} {'way':<16} {'ms':>8} {'x floor':>8} {'dropped share':>14} {'masks as uncompiled':>20}")
    for width in args.widths:
        g = torch.Generator(device).manual_seed(0)
        gate, up = (torch.randn(args.tokens, width, device=device, dtype=dtype, generator=g).requires_grad_()
                    for _ in range(2))
        grads = tuple(torch.randn(args.tokens, width, device=device, dtype=dtype, generator=g) for _ in range(2))
        live = (F.silu(gate.detach()) * up.detach()) != 0
        torch._dynamo.reset()  # each width compiles for its own static shape
        rows, masks = {}, {}
        for name, fn in ways(args.p).items():
            torch.manual_seed(1)
            masks[name] = (forward_backward(fn, gate, up, grads).detach() == 0) & live
            rows[name] = {"ms": round(time_ms(forward_backward, (fn, gate, up, grads), device, args.iters), 4),
                          "dropped_share": masks[name].float().mean().item()}
        for name, r in rows.items():
            r["x_floor"] = round(r["ms"] / rows["no dropout"]["ms"], 3)
            r["masks_as_uncompiled"] = bool(torch.equal(masks[name], masks["uncompiled"]))
            print(f"{width:>6} {name:<16} {r['ms']:>8.3f} {r['x_floor']:>8.2f} {r['dropped_share']:>14.4f} "
                  f"{str(r['masks_as_uncompiled']):>20}")
        results[str(width)] = rows
    masks = packed_masks(args, device)
    if args.json:
        args.json.write_text(json.dumps({"args": vars(args) | {"json": str(args.json)}, "device": str(device),
                                         "torch": torch.__version__, "inductor_4x": draws_4x,
                                         "widths": results, "packed_masks": masks}, indent=1))


if __name__ == "__main__":
    main()
