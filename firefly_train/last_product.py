"""A checkpointed decoder layer that does not recompute its last base product.

Under gradient checkpointing a decoder layer runs its forward twice: in the forward pass, and again in backward
to rebuild the tensors its backward needs. The output of its last projection (the MLP's `down_proj`) only
flows into the residual add: backward needs that projection's weight and its LoRA branch's own tensors, never
its output. Recomputing its frozen base product wastes about a fifth of the layer's matrix work; at 7B with
27 layers recomputed, leaving it out took a step on an H200 from 710 to 674 ms (bench/NOTES.md).

`checkpoint(run, layer, *args)` runs the layer under the checkpoint with that base product taken out: the base
layer returns zeros and hands its input back, and the product is added outside the checkpoint, once. Its input
is not kept: the base product saves only its weight. The result differs from the layer's own only in the
rounding of the residual add (`(h + lora) + base` instead of `h + (base + lora)`).

Only decoder layers whose output is `residual + mlp(norm(residual))`, with an MLP that ends in `down_proj`, take
part (`LAYER_TYPES`); any other layer is checkpointed whole.
"""
from __future__ import annotations

import types
from functools import partial

import torch
from torch.utils.checkpoint import checkpoint as torch_checkpoint

LAYER_TYPES = frozenset({"LlamaDecoderLayer", "MistralDecoderLayer", "Qwen2DecoderLayer", "Qwen3DecoderLayer"})


def install(layer) -> bool:
    """Let `layer`'s last base product be taken out of its checkpoint; False for a layer of another shape."""
    down = getattr(getattr(layer, "mlp", None), "down_proj", None)
    if type(layer).__name__ not in LAYER_TYPES or down is None:
        return False
    base = getattr(down, "base_layer", down)  # the frozen linear under a peft LoRA layer
    base._own_forward, base._handoff = base.forward, None
    base.forward = types.MethodType(_forward, base)
    layer._last_base = base
    return True


def _forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
    if self._handoff is None:
        return self._own_forward(x, *args, **kwargs)
    self._handoff.append(x)
    return x.new_zeros(*x.shape[:-1], self.out_features)


def _handing_off(base, run, *args):
    """`run(*args)` with `base` returning zeros; (its output, the input `base` was given)."""
    base._handoff = handed = []
    try:
        out = run(*args)
    finally:  # also when the checkpoint stops a recomputation early
        base._handoff = None
    return out, handed[0]


def checkpoint(run, layer, *args) -> torch.Tensor:
    """`run(*args)` (the layer's forward) under a non-reentrant checkpoint, without its last base product when
    `install` took the layer; that product then runs outside the checkpoint in the class's own forward
    (bitsandbytes' kernels for a 4-bit layer: this call is not compiled)."""
    base = getattr(layer, "_last_base", None)
    if base is None:
        return torch_checkpoint(run, *args, use_reentrant=False)
    out, x = torch_checkpoint(partial(_handing_off, base, run), *args, use_reentrant=False)
    return out + type(base).forward(base, x)
