"""One LoRA pass per shared input: the q/k/v projections (and gate/up) read the same hidden states, so their
LoRA branches share one dropout mask and one down-projection `dropout(x) @ [A_q; A_k; A_v]^T`, and every
LoRA branch is added to its base output in one fused `addmm` (peft clones the base output, then adds); in
compiled code the add goes into the next fused kernel instead.

The parameters, their names and the saved adapter are peft's own: only the forward of each peft LoRA layer is
replaced, on the instance, so checkpoints stay PEFT files and `merge_and_unload` works as before. What changes
is the randomness: peft draws one dropout mask per module, this draws one per shared input, with the drop
probability resolved to 1/4,096 (with dropout 0 the two are the same computation up to summation order). The
backward rebuilds each dropped input from its mask, kept as bits (`keep_bits`), instead of keeping it
(`_DroppedDown`): a kept compiled 13B layer holds about 0.9 GiB for its backward instead of 1.56 (bench/NOTES.md).

A group is used only when its members are plain LoRA layers of one adapter with the same rank and dropout, and
only for a call whose input is the very tensor the group's first member saw; anything else (a merged or
disabled adapter, mixed-adapter batches, DoRA) falls back to peft's own forward.
"""
from __future__ import annotations

import importlib.util
import types

import torch
import torch.nn.functional as F

if importlib.util.find_spec("triton") is not None:  # PyTorch's CUDA wheels bring it
    from firefly_train import mask_kernel  # registers torch.ops.firefly.keep_bits, the GPU's masks
else:
    mask_kernel = None

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


MASK_RESOLUTION = 1 << 12  # a dropout probability p drops round(p * 4,096) of every 4,096 values


def down_projection(dropout, x: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """`F.linear(dropout(x), a)` for peft's LoRA dropout module. An `nn.Dropout` in training over a last dimension
    divisible by 8, whose p drops between 1 and 4,095 in `MASK_RESOLUTION`, draws its mask with `keep_bits` and
    runs in `_DroppedDown`."""
    if isinstance(dropout, torch.nn.Dropout) and dropout.training and x.shape[-1] % 8 == 0:
        drop = round(dropout.p * MASK_RESOLUTION)
        if 0 < drop < MASK_RESOLUTION:
            return _DroppedDown.apply(x, keep_bits(x, drop), a, MASK_RESOLUTION / (MASK_RESOLUTION - drop))
    return F.linear(dropout(x), a)


def keep_bits(x: torch.Tensor, drop: int) -> torch.Tensor:
    """The keep mask of a dropout over `x` that drops `drop` in `MASK_RESOLUTION`, packed 8 elements a byte (bit j
    of byte i along the last dimension is element 8i + j); x's last dimension is divisible by 8. The packed mask is
    what a kept layer keeps for its backward, an eighth of a bool mask.

    On a GPU one Triton kernel draws and packs it (`mask_kernel`: Philox keyed by one int64 from PyTorch's
    generator), elsewhere `rand_keep_bits`. Nothing here is drawn in place (`empty(...).random_()`, `bernoulli_`):
    inductor 2.13 ordered fused kernels reading such a tensor before the eager call that fills it, with
    compile_eager_dropout (bench/NOTES.md)."""
    shape = [*x.shape[:-1], x.shape[-1] // 8]
    if x.is_cuda and mask_kernel is not None:
        return torch.ops.firefly.keep_bits(torch.randint(1 << 62, (1,), device=x.device), shape, drop)
    return rand_keep_bits(shape, drop, x.device)


def rand_keep_bits(shape: list[int], drop: int, device: torch.device) -> torch.Tensor:
    """`keep_bits`' packed mask of `shape` bytes from float32 `rand`, in torch ops. Each element takes 12 random
    bits: a float32 `rand` value is one of 2**24 equally likely multiples of 2**-24 (from 32 random bits), so
    `rand * 2**24` gives two 12-bit fields. Not `randint` over a range: a 64-bit modulo per value, 0.356 ms against
    `rand`'s 0.093 for a 13B MLP input on an H200 (bench/NOTES.md)."""
    drawn = (torch.rand((*shape, 4), device=device) * (1 << 24)).to(torch.int32)
    packed = None
    for j in range(8):
        field = drawn[..., j // 2] >> 12 if j % 2 else drawn[..., j // 2] & 0xFFF
        kept = (field >= drop).to(torch.uint8) << j
        packed = kept if packed is None else packed | kept
    return packed


def unpack_bits(packed: torch.Tensor, for_backward: bool = False) -> torch.Tensor:
    """`keep_bits`' mask as 0/1 values of uint8, one an element. `for_backward` computes it with other ops: the
    backward's must share no step with the forward's, or the compiler's common-subexpression pass merges them and
    keeps the unpacked mask from the forward to the backward."""
    shifts = torch.arange(8, dtype=torch.uint8, device=packed.device)
    if for_backward:
        bits = torch.div(packed.unsqueeze(-1), 1 << shifts, rounding_mode="floor") % 2
    else:
        bits = (packed.unsqueeze(-1) >> shifts) & 1
    return bits.flatten(-2)


class _DroppedDown(torch.autograd.Function):
    """dropout(x) @ A^T whose backward rebuilds dropout(x) from x and the packed mask instead of keeping it.

    With `nn.Dropout` the dropped input is an output of the dropout kernel, which the compiler never recomputes,
    and A's gradient needs it: a compiled layer kept it (2 bytes an element) beside the mask and the input it
    already keeps, 28 % of what a 13B decoder layer keeps for its backward (bench/NOTES.md). Here the backward
    computes `x * mask * scale` again, in another order so that the compiler does not merge it with the
    forward's (and keep that). A's gradient is returned in A's dtype; the products run in x's, as under autocast."""

    @staticmethod
    def forward(ctx, x, packed, a, scale):
        ctx.save_for_backward(x, packed, a)
        ctx.scale = scale
        return F.linear(x * unpack_bits(packed) * scale, a.to(x.dtype))

    @staticmethod
    def backward(ctx, grad):
        x, packed, a = ctx.saved_tensors
        keep = unpack_bits(packed, for_backward=True)
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
