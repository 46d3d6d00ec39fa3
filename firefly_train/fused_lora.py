"""One LoRA pass per shared input: the q/k/v projections (and gate/up) read the same hidden states, so their
LoRA branches share one dropout mask and one down-projection `dropout(x) @ [A_q; A_k; A_v]^T`, and every
LoRA branch is added to its base output in one fused `addmm` (peft clones the base output, then adds); in
compiled code the add goes into the next fused kernel instead.

The parameters, their names and the saved adapter are peft's own: only the forward of each peft LoRA layer is
replaced, on the instance, so checkpoints stay PEFT files and `merge_and_unload` works as before. What changes
is the randomness: peft draws one dropout mask per module, this draws one per shared input (with dropout 0 the
two are the same computation up to summation order). The backward rebuilds each dropped input from its 1-byte mask
instead of keeping it (`_DroppedDown`): a kept compiled 13B layer holds 1.11 GiB for its backward instead of 1.56.

A group is used only when its members are plain LoRA layers of one adapter with the same rank and dropout, and
only for a call whose input is the very tensor the group's first member saw; anything else (a merged or
disabled adapter, mixed-adapter batches, DoRA) falls back to peft's own forward.
"""
from __future__ import annotations

import types

import torch
import torch.nn.functional as F

# Projections that read one input in the decoder layers of Llama, Mistral, Qwen 2/3, Falcon-style MLPs, ...
SHARED_INPUTS = (("q_proj", "k_proj", "v_proj"), ("gate_proj", "up_proj"))


class SharedDown:
    """The LoRA down-projection of one input, computed by the group's first caller and handed to the others."""

    def __init__(self, members: list, adapter: str):
        self.members, self.adapter = members, adapter
        self.rank = members[0].r[adapter]
        self.x = self.down = None
        self.left = 0

    def for_member(self, module, x: torch.Tensor) -> torch.Tensor:
        if self.x is not x or self.left == 0:
            a = torch.cat([m.lora_A[self.adapter].weight for m in self.members])
            down = down_projection(self.members[0].lora_dropout[self.adapter], x.to(a.dtype) if _converts(x) else x, a)
            self.x, self.down, self.left = x, down, len(self.members)
        k = self.members.index(module)
        down = self.down[..., k * self.rank:(k + 1) * self.rank]
        self.left -= 1
        if self.left == 0:  # every member has its slice: keep no activation alive past the group
            self.x = self.down = None
        return down


def down_projection(dropout, x: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """`F.linear(dropout(x), a)` for peft's LoRA dropout module. An `nn.Dropout` in training draws its mask as
    `rand_like(x) >= p` and runs in `_DroppedDown`. (Not `empty(...).bernoulli_(1 - p)`: inductor 2.13 scheduled a
    fused kernel reading that mask before the eager `bernoulli_` call that fills it, with compile_eager_dropout.)"""
    if not (isinstance(dropout, torch.nn.Dropout) and dropout.training and 0 < dropout.p < 1):
        return F.linear(dropout(x), a)
    return _DroppedDown.apply(x, torch.rand_like(x) >= dropout.p, a, 1 / (1 - dropout.p))


class _DroppedDown(torch.autograd.Function):
    """dropout(x) @ A^T whose backward rebuilds dropout(x) from x and the 1-byte mask instead of keeping it.

    With `nn.Dropout` the dropped input is an output of the dropout kernel, which the compiler never recomputes,
    and A's gradient needs it: a compiled layer kept it (2 bytes an element) beside the mask and the input it
    already keeps, 28 % of what a 13B decoder layer keeps for its backward (bench/NOTES.md). Here the backward
    computes `x * mask / (1 - p)` again, in another order so that the compiler does not merge it with the
    forward's (and keep that). A's gradient is returned in A's dtype; the products run in x's, as under autocast."""

    @staticmethod
    def forward(ctx, x, keep, a, scale):
        ctx.save_for_backward(x, keep, a)
        ctx.scale = scale
        return F.linear(x * keep * scale, a.to(x.dtype))

    @staticmethod
    def backward(ctx, grad):
        x, keep, a = ctx.saved_tensors
        dropped = (x * ctx.scale * keep).to(grad.dtype)
        grad_a = grad.reshape(-1, grad.shape[-1]).t() @ dropped.reshape(-1, dropped.shape[-1])
        grad_x = None
        if ctx.needs_input_grad[0]:
            grad_x = (grad @ a.to(grad.dtype)).to(x.dtype) * keep * ctx.scale
        return grad_x, None, grad_a.to(a.dtype), None


def _converts(x: torch.Tensor) -> bool:
    """peft's rule: without autocast the LoRA branch runs in the adapter's dtype (fp32) and is cast back."""
    return not torch.is_autocast_enabled(x.device.type)


def _plain(module, adapter: str) -> bool:
    """A LoRA linear layer without variant (DoRA, ...) or LoRA bias for this adapter."""
    return (adapter in module.lora_A and adapter not in module.lora_variant
            and not module.lora_bias.get(adapter, False) and isinstance(module.base_layer, torch.nn.Module))


def _fused_forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
    adapter, group = self._fused_adapter, self._fused_group
    if (self.disable_adapters or self.merged or kwargs.get("adapter_names") is not None
            or list(self.active_adapters) != [adapter]):
        return type(self).forward(self, x, *args, **kwargs)
    result = self.base_layer(x, *args, **kwargs)
    if group is not None:
        down = group.for_member(self, x)
    else:
        a = self.lora_A[adapter].weight
        down = down_projection(self.lora_dropout[adapter], x.to(a.dtype) if _converts(x) else x, a)
    b, scaling = self.lora_B[adapter].weight, self.scaling[adapter]
    if _converts(x) and result.dtype != b.dtype:  # a 16-bit base under no autocast: peft's cast back
        return result + (F.linear(down, b) * scaling).to(result.dtype)
    if torch.compiler.is_compiling():  # the compiler adds it inside the next fused kernel; addmm would first copy
        return result + F.linear(down, b) * scaling  # the base output (19 ms of a 7B step, bench/NOTES.md)
    flat = torch.addmm(result.reshape(-1, result.shape[-1]), down.reshape(-1, down.shape[-1]), b.t(), alpha=scaling)
    return flat.view(result.shape)


def fuse_shared_inputs(model, adapter: str = "default") -> dict[str, int]:
    """Replace the forward of every plain peft LoRA layer of `model`; returns how many layers went into shared
    groups and how many run alone."""
    from peft.tuners.lora import LoraLayer

    layers = {name: m for name, m in model.named_modules() if isinstance(m, LoraLayer) and _plain(m, adapter)}
    grouped = set()
    for name in layers:
        parent, _, leaf = name.rpartition(".")
        for names in SHARED_INPUTS:
            if leaf != names[0]:
                continue
            members = [layers.get(f"{parent}.{n}") for n in names]
            if all(m is not None for m in members) and len({(m.r[adapter], m.lora_dropout[adapter].__class__,
                                                              getattr(m.lora_dropout[adapter], "p", 0.0))
                                                             for m in members}) == 1:
                group = SharedDown(members, adapter)
                for n, m in zip(names, members):
                    m._fused_group = group
                    grouped.add(f"{parent}.{n}")
    for name, m in layers.items():
        m._fused_adapter = adapter
        if name not in grouped:
            m._fused_group = None
        m.forward = types.MethodType(_fused_forward, m)
    return {"grouped": len(grouped), "alone": len(layers) - len(grouped)}
