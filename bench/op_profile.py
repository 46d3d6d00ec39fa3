"""Where a training step's time goes: torch.profiler over a few steps, its time per op class.

The classes are the ones the training-speed issue asks for (NF4 dequantisation, base matmuls, LoRA matmuls,
dropout, norms/RoPE/activations, attention, head + loss, optimizer) plus casts/copies, embeddings and the
rest. An op is classed by its name and input shapes: a matrix product with the vocabulary size among its
dimensions belongs to the head, one with the LoRA rank to LoRA, any other to the base (so a toy shape must
not use the rank as a width or a token count); everything inside the optimizer's step is the optimizer's. Time is each op's
self time on the device (on the CPU when there is no GPU), so nested ops are not counted twice; kernels are
counted through the op that launched them. On a GPU, `device_idle` adds the time the GPU sat between kernels
and the CPU ops that kept it waiting.
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
    if "dropout" in low or "bernoulli" in low or name in ("aten::uniform_", "aten::rand_like"):
        return "dropout"  # (rand_like: the LoRA dropout masks of fused_lora)
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


def _ops_at(cpu_ops: list, times: list[float]) -> list:
    """For each of the (sorted) times, the innermost CPU op running at it on any thread, or None. One sweep per
    thread: ops of a thread nest, so a stack of the open ones holds the innermost on top."""
    threads: dict[int, list] = {}
    for e in sorted(cpu_ops, key=lambda e: (e.time_range.start, -e.time_range.end)):
        threads.setdefault(e.thread, []).append(e)
    found = [None] * len(times)
    for ops in threads.values():
        stack, i = [], 0
        for k, t in enumerate(times):
            while i < len(ops) and ops[i].time_range.start <= t:
                while stack and stack[-1].time_range.end < ops[i].time_range.start:
                    stack.pop()
                stack.append(ops[i])
                i += 1
            while stack and stack[-1].time_range.end < t:
                stack.pop()
            if stack and (found[k] is None or _length(stack[-1]) < _length(found[k])):
                found[k] = stack[-1]
    return found


def _length(event) -> float:
    return event.time_range.end - event.time_range.start


def _outermost(event):
    while event.cpu_parent is not None:
        event = event.cpu_parent
    return event


def device_idle(events, steps: int, min_gap_us: float = 20.0) -> dict:
    """Milliseconds per step the GPU ran no kernel between two kernels (gaps of at least `min_gap_us`), and who
    kept it waiting: each gap is charged to the CPU op running at its middle, innermost (`by_op`: what the CPU was
    doing, e.g. an optimizer's per-parameter launch) and outermost (`by_range`: the top-level range it belongs to,
    e.g. `Optimizer.step#...`). Kernels of every stream count as busy; a range's span on the GPU timeline
    (`record_function` draws one) does not."""
    from torch.autograd import DeviceType

    kernels = sorted((e.time_range.start, e.time_range.end) for e in events
                     if e.device_type != DeviceType.CPU and not e.is_user_annotation)
    gaps, busy_until = [], None
    for start, end in kernels:
        if busy_until is not None and start - busy_until >= min_gap_us:
            gaps.append((busy_until, start))
        busy_until = end if busy_until is None else max(busy_until, end)
    running = _ops_at([e for e in events if e.device_type == DeviceType.CPU], [(a + b) / 2 for a, b in gaps])
    by_op: dict[str, float] = {}
    by_range: dict[str, float] = {}
    for (a, b), op in zip(gaps, running):
        ms = (b - a) / 1000 / steps
        inner, outer = (op.name, _outermost(op).name) if op is not None else ("(no CPU op)", "(no CPU op)")
        by_op[inner] = by_op.get(inner, 0.0) + ms
        by_range[outer] = by_range.get(outer, 0.0) + ms

    def top(d: dict) -> dict:
        return {k: round(v, 4) for k, v in sorted(d.items(), key=lambda kv: -kv[1])[:10]}
    return {"ms_per_step": round(sum((b - a) for a, b in gaps) / 1000 / steps, 4), "by_op": top(by_op),
            "by_range": top(by_range)}


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
    events = prof.events()
    for e in events:
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
    result = {"ms_per_step": per_class, "ops": ops, "clock": "device" if cuda else "cpu",
              "top": [{"op": op, "class": c, "ms": round(ms, 3), "calls": round(calls)}
                      for (c, op), (ms, calls) in ranked]}
    if cuda:
        result["idle"] = device_idle(events, steps)
    return result


def print_breakdown(name: str, result: dict, step_ms: float | None = None) -> None:
    total = sum(result["ms_per_step"].values())
    wall = f"; a step took {step_ms:.1f} ms" if step_ms else ""
    print(f"\n{name}: {result['clock']} time per step by op class ({total:.1f} ms in ops{wall})")
    for c, ms in sorted(result["ms_per_step"].items(), key=lambda kv: -kv[1]):
        if ms > 0:
            print(f"  {c:<28}{ms:>10.1f} ms {100 * ms / total:>6.1f} %   " + ", ".join(result["ops"][c])[:90])
    if "idle" in result:
        idle = result["idle"]
        print(f"  GPU idle between kernels: {idle['ms_per_step']:.1f} ms a step; charged to the CPU op running "
              "(innermost | top-level range):")
        for (op, ms), (rng, rms) in zip(idle["by_op"].items(), idle["by_range"].items()):
            print(f"    {op[:50]:<50} {ms:>8.1f} ms | {rng[:50]:<50} {rms:>8.1f} ms")
    print(f"  the {len(result['top'])} ops taking the most time:")
    for row in result["top"]:
        print(f"    {row['op'][:60]:<60} {row['class']:<26} {row['ms']:>9.1f} ms {row['calls']:>7} calls")
