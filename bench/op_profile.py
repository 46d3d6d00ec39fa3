"""Where a training step's time goes: torch.profiler over a few steps, its time per op class.

The classes are the ones the training-speed issue asks for (NF4 dequantisation, base matmuls, LoRA matmuls,
dropout, norms/RoPE/activations, attention, head + loss, optimizer) plus casts/copies, embeddings and the
rest. An op is classed by its name and input shapes: a matrix product with the vocabulary size among its
dimensions belongs to the head, one with the LoRA rank to LoRA, any other to the base (so a toy shape must
not use the rank as a width or a token count); everything inside the optimizer's step is the optimizer's. Time is each op's
self time on the device (on the CPU when there is no GPU), so nested ops are not counted twice; kernels are
counted through the op that launched them.
"""
from __future__ import annotations

from contextlib import contextmanager

import torch

MATMULS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::matmul", "aten::linear",
           "aten::_scaled_mm")
CLASSES = ("NF4 dequantise", "base matmuls", "LoRA matmuls", "head + loss", "attention", "dropout",
           "norms, RoPE, activations", "casts and copies", "embeddings", "optimizer", "other")
ELEMENTWISE = ("aten::mul", "aten::add", "aten::pow", "aten::mean", "aten::rsqrt", "aten::silu", "aten::neg",
               "aten::cat", "aten::sub", "aten::div", "aten::sigmoid", "aten::cos", "aten::sin", "aten::rms_norm",
               "aten::_fused_rms_norm", "aten::silu_backward", "aten::sum", "aten::where", "aten::fill_",
               "aten::zero_", "aten::slice_backward", "aten::masked_fill")


def op_class(name: str, shapes: list, rank: int, vocab: int) -> str:
    low = name.lower()
    dims = {d for s in shapes or [] if isinstance(s, (list, tuple)) for d in s if isinstance(d, int)}
    if "dequant" in low:
        return "NF4 dequantise"
    if any(w in low for w in ("optimizer", "adam", "_foreach", "clip_grad")) or name == "aten::linalg_vector_norm":
        return "optimizer"  # (and gradient clipping, which computes the gradients' norm)
    if "attention" in low or "flash" in low or "varlen" in low or "sdpa" in low:
        return "attention"
    if "cross_entropy" in low or "log_softmax" in low or "nll_loss" in low or "_softmax" in low:
        return "head + loss"
    if name in MATMULS or "matmul" in low or "gemm" in low:
        return "head + loss" if vocab in dims else "LoRA matmuls" if rank in dims else "base matmuls"
    if "dropout" in low or "bernoulli" in low:
        return "dropout"
    if "embedding" in low:
        return "embeddings"
    if name in ("aten::copy_", "aten::_to_copy", "aten::to", "aten::clone", "aten::contiguous"):
        return "casts and copies"
    if name in ELEMENTWISE or name.rstrip("_") in ELEMENTWISE or "norm" in low or "rotary" in low:
        return "norms, RoPE, activations"
    return "other"


@contextmanager
def profiled():
    """A torch.profiler over the block (CPU ops, and CUDA kernels when there is a GPU), with input shapes."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
    with profile(activities=activities, record_shapes=True) as prof:
        yield prof
        if torch.cuda.is_available():
            torch.cuda.synchronize()  # the block's queued kernels finish inside the profile


def _under(event, prefix: str) -> bool:
    """Whether the event runs inside a range whose name starts with `prefix` (e.g. the optimizer's step)."""
    parent = event.cpu_parent
    while parent is not None:
        if parent.name.startswith(prefix):
            return True
        parent = parent.cpu_parent
    return False


def breakdown(prof, steps: int, rank: int, vocab: int) -> dict:
    """Milliseconds per step by class (device self time on a GPU, CPU self time without one); `ops`: the five
    ops taking the most time in each class, to check the classing; `top`: the 25 ops taking the most time
    overall, with their class and call count per step. Everything inside the optimizer's step is the
    optimizer's."""
    from torch.autograd import DeviceType

    cuda = torch.cuda.is_available()
    per_class = dict.fromkeys(CLASSES, 0.0)
    top: dict[str, dict[str, float]] = {c: {} for c in CLASSES}
    overall: dict[tuple[str, str], list] = {}  # (class, op) -> [ms, calls] per step
    for e in prof.events():
        if e.device_type != DeviceType.CPU:  # kernels: counted through the op that launched them
            continue
        ms = (e.self_device_time_total if cuda else e.self_cpu_time_total) / 1000 / steps
        if ms <= 0:
            continue
        c = "optimizer" if _under(e, "Optimizer.") else op_class(e.name, e.input_shapes, rank, vocab)
        per_class[c] += ms
        top[c][e.name] = top[c].get(e.name, 0.0) + ms
        row = overall.setdefault((c, e.name), [0.0, 0.0])
        row[0], row[1] = row[0] + ms, row[1] + 1 / steps
    ops = {c: dict(sorted(t.items(), key=lambda kv: -kv[1])[:5]) for c, t in top.items() if t}
    ranked = sorted(overall.items(), key=lambda kv: -kv[1][0])[:25]
    return {"ms_per_step": per_class, "ops": ops, "clock": "device" if cuda else "cpu",
            "top": [{"op": op, "class": c, "ms": round(ms, 3), "calls": round(calls)} for (c, op), (ms, calls) in ranked]}


def print_breakdown(name: str, result: dict, step_ms: float | None = None) -> None:
    total = sum(result["ms_per_step"].values())
    wall = f"; a step took {step_ms:.1f} ms" if step_ms else ""
    print(f"\n{name}: {result['clock']} time per step by op class ({total:.1f} ms in ops{wall})")
    for c, ms in sorted(result["ms_per_step"].items(), key=lambda kv: -kv[1]):
        if ms > 0:
            print(f"  {c:<28}{ms:>10.1f} ms {100 * ms / total:>6.1f} %   " + ", ".join(result["ops"][c])[:90])
    print(f"  the {len(result['top'])} ops taking the most time:")
    for row in result["top"]:
        print(f"    {row['op'][:60]:<60} {row['class']:<26} {row['ms']:>9.1f} ms {row['calls']:>7} calls")
