"""How fast a decoder layer's activations move between the GPU and host memory: what `offloaded_layers`
(`firefly_train/offload.py`) spends, against the layer's recompute it saves.

A 13B layer at 8 x 1,024 tokens saves about 0.88 GiB for its backward (its input, q, k, v, the attention output,
the residual in bf16: 80 MB each; gate and up: 226 MB each). Ways: into and out of pinned memory, each alone and
both at once on two streams (the forward of later layers sends while the backward of earlier ones receives only in
a pipeline; both at once is the upper bound on sharing), and pageable memory (what an offload without pinned
buffers would get) as the baseline. Each row prints GB/s and the milliseconds a 13B layer's tensors take.

    python bench/host_link_speed.py --json link.json
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from gemm_rates import timed

MB = 1 << 20


def layer_tensors(tokens: int, hidden: int, intermediate: int, device) -> list[torch.Tensor]:
    """The bf16 tensors a compiled 13B-shaped decoder layer keeps (bench/NOTES.md, sixteenth session)."""
    sizes = [tokens * hidden] * 6 + [tokens * intermediate] * 2
    return [torch.empty(n, dtype=torch.bfloat16, device=device) for n in sizes]


def ways(device, tensors, pinned: bool) -> dict:
    hosts = [torch.empty(t.shape, dtype=t.dtype, pin_memory=pinned and device.type == "cuda") for t in tensors]
    out_stream = torch.cuda.Stream() if device.type == "cuda" else None
    in_stream = torch.cuda.Stream() if device.type == "cuda" else None

    def copy(dsts, srcs, stream=None):  # torch.cuda.stream(None) changes nothing, also without CUDA
        with torch.cuda.stream(stream):
            for d, src in zip(dsts, srcs):
                d.copy_(src, non_blocking=pinned)

    def send():
        copy(hosts, tensors)

    def receive():
        copy(tensors, hosts)

    def both():
        copy(hosts, tensors, out_stream)
        copy(tensors, hosts, in_stream)

    kind = "pinned" if pinned else "pageable"
    found = {f"{kind}: device to host": send, f"{kind}: host to device": receive}
    if pinned and device.type == "cuda":
        found["pinned: both at once (two streams)"] = both
    return found


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokens", type=int, default=8192)
    ap.add_argument("--hidden", type=int, default=5120)
    ap.add_argument("--intermediate", type=int, default=13824)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    tensors = layer_tensors(args.tokens, args.hidden, args.intermediate, device)
    layer_bytes = sum(t.numel() * t.element_size() for t in tensors)
    print(f"{device}, torch {torch.__version__}: one layer's tensors, {layer_bytes / MB:,.1f} MiB")
    print(f"{'way':<36} {'GB/s':>8} {'ms a layer':>11} {'x pageable':>11}")
    rows = {}
    for pinned in (False, True):
        for name, fn in ways(device, tensors, pinned).items():
            ms = timed(fn, device, args.repeats)  # synchronises the whole device: the side streams' copies count
            moved = layer_bytes * (2 if "both" in name else 1)
            rows[name] = {"gb_s": round(moved / ms / 1e6, 2), "ms_a_layer": round(ms, 3)}
    for name, r in rows.items():
        direction = "device to host" if "device to host" in name or "both" in name else "host to device"
        base = rows[f"pageable: {direction}"]["gb_s"]
        r["x_pageable"] = round(r["gb_s"] / base, 2)
        print(f"{name:<36} {r['gb_s']:>8.2f} {r['ms_a_layer']:>11.2f} {r['x_pageable']:>11.2f}")
    if args.json:
        args.json.write_text(json.dumps({"device": str(device), "torch": torch.__version__, "args": vars(args) | {
            "json": str(args.json)}, "layer_bytes": layer_bytes, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
