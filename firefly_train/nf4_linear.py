"""NF4 linear layers for compiled decoder layers: the 4-bit base weight dequantised from the compiled code.

bitsandbytes' `Linear4bit` reaches its CUDA kernels through Python op implementations (absmax, weight, then
`F.linear`), about 0.3 ms of CPU a call; a compiled 7B decoder layer spent most of its CPU time there, and a
QLoRA step at micro-batch 8 waited on the CPU for a tenth of its time (bench/NOTES.md). Here the double-quantised
absmax (`code2[8-bit index] * absmax2 + offset`, as bitsandbytes computes it) is undone by torch ops, which the
compiler fuses, and the weight comes from bitsandbytes' own dequantisation kernel, called from the compiled code
as one opaque op (`nf4_weight`): a 13B step ran 0.8 % faster than with inductor's code for the same dequantisation
in torch ops (bench/NOTES.md, seventeenth session). The weights are bitsandbytes' bit for bit.

`install(model)` swaps the forward of every NF4 `Linear4bit` on the instance (the module, its parameters and
saved checkpoints are unchanged). The product runs in an autograd Function that saves only the 4-bit weight
and dequantises it again for the input gradient, as bitsandbytes does: a 16-bit copy of every weight is never
kept. Eager code gains nothing from this, so firefly-train installs it only with `compile_layers`.

With `fp8_scaling` (config `fp8_base_products`) the forward product runs in FP8 (`fp8_product`): the weight
dequantised in float32 as above, then rounded to e4m3 with a scale per output row and the input with one per
token row ("rowwise"), or each with one scale ("tensorwise"); `torch._scaled_mm` accumulates in float32. The
backward is the same as without it.
"""
from __future__ import annotations

import math
import types

import torch
import torch.nn.functional as F


def absmax_of(qs) -> torch.Tensor:
    """The float32 absmax of each block, undoing double quantisation: `code2[8-bit index] * absmax2 + offset`,
    absmax2 that of each block of `state2.blocksize` indices. A partial last block is padded and the padding kept
    (`nf4_weight` reads only the blocks it needs): sliced off in compiled code, inductor 2.13's CPU kernel wrote
    only the first block of 256 values and fed the rest to bitsandbytes' kernel unwritten (as did the scales'
    `repeat_interleave(block)[:n]`)."""
    if not qs.nested:
        return qs.absmax
    values, block = qs.state2.code[qs.absmax.int()], qs.state2.blocksize
    blocks = F.pad(values, (0, -values.numel() % block)).view(-1, block)
    return (blocks * qs.state2.absmax.view(-1, 1) + qs.offset).reshape(-1)


@torch.library.custom_op("firefly::nf4_weight", mutates_args=())
def nf4_weight(packed: torch.Tensor, absmax: torch.Tensor, blocksize: int, shape: list[int], dtype: torch.dtype,
               after: torch.Tensor) -> torch.Tensor:
    """The weight of `shape` in `dtype` from bitsandbytes' packed 4-bit NF4 indices and the float32 absmax of each
    block: bitsandbytes' own kernel (on an H200 a 13B gate/up weight in 0.090 ms against 0.212 for inductor's code
    for the same torch ops, bench/NOTES.md), to the compiler an opaque op.

    `after` is not read; it orders the call after that tensor. The backward passes its incoming gradient, so its
    call depends on the gradient: the compiler can then neither merge it with the forward's call nor run it in the
    forward, and the 16-bit weight is never kept from the forward to the backward (an opaque op's output would
    be kept rather than recomputed). `absmax` may be longer than the weight's blocks (`absmax_of`)."""
    blocks = -(-math.prod(shape) // blocksize)
    return torch.ops.bitsandbytes.dequantize_4bit(packed, absmax[:blocks], blocksize, "nf4", shape, dtype)


@nf4_weight.register_fake
def _(packed, absmax, blocksize, shape, dtype, after):
    return packed.new_empty(shape, dtype=dtype)


FP8 = torch.float8_e4m3fn
FP8_MAX = torch.finfo(FP8).max  # 448


def to_fp8(values: torch.Tensor, rowwise: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """A 2-D float tensor as e4m3 and its float32 scale: the largest magnitude / 448 of each row (rowwise), or
    of the whole tensor."""
    values = values.float()
    amax = values.abs().amax(dim=1, keepdim=True) if rowwise else values.abs().amax()
    scale = amax.clamp(min=torch.finfo(torch.float32).tiny) / FP8_MAX
    return (values / scale).to(FP8), scale


def fp8_product(x: torch.Tensor, packed: torch.Tensor, absmax: torch.Tensor, blocksize: int, shape: list[int],
                rowwise: bool) -> torch.Tensor:
    """x @ W^T with both operands in e4m3: W dequantised from NF4 in float32 (`nf4_weight`), then rounded
    to e4m3 with a scale per output row and x with one per token row (rowwise: CUTLASS's kernels on Hopper), or
    each with one scale (cuBLAS's); `torch._scaled_mm` accumulates in float32 and returns x's dtype."""
    weight, weight_scale = to_fp8(nf4_weight(packed, absmax, blocksize, shape, torch.float32, x), rowwise)
    rows, row_scale = to_fp8(x.reshape(-1, shape[1]), rowwise)
    return scaled_mm(rows, row_scale, weight, weight_scale, x.dtype).view(*x.shape[:-1], shape[0])


def scaled_mm(rows: torch.Tensor, row_scale: torch.Tensor, weight: torch.Tensor, weight_scale: torch.Tensor,
              out_dtype: torch.dtype) -> torch.Tensor:
    """rows @ weight^T for e4m3 operands and their float32 scales (`to_fp8`): `torch._scaled_mm`, float32 sums."""
    return torch._scaled_mm(rows, weight.t(), scale_a=row_scale, scale_b=weight_scale.t(), out_dtype=out_dtype)


def _gradients(ctx, grad) -> tuple:
    """The input's and the bias's gradients (W dequantised again, in grad's dtype), None for the other inputs."""
    packed, absmax = ctx.saved_tensors
    grad_x = grad_bias = None
    if ctx.needs_input_grad[0]:
        grad_x = grad @ nf4_weight(packed, absmax, ctx.blocksize, ctx.shape, grad.dtype, grad)
    if ctx.needs_input_grad[5]:
        grad_bias = grad.reshape(-1, grad.shape[-1]).sum(0, dtype=torch.float32).to(grad.dtype)
    return grad_x, None, None, None, None, grad_bias


class _NF4Matmul(torch.autograd.Function):
    """x @ W^T + bias for a frozen NF4 weight W; the backward dequantises W again (nothing 16-bit is saved)."""

    @staticmethod
    def forward(ctx, x, packed, absmax, blocksize, shape, bias):
        ctx.save_for_backward(packed, absmax)
        ctx.blocksize, ctx.shape = blocksize, shape
        return F.linear(x, nf4_weight(packed, absmax, blocksize, shape, x.dtype, x), bias)

    @staticmethod
    def backward(ctx, grad):
        return _gradients(ctx, grad)


class _NF4MatmulFP8(torch.autograd.Function):
    """The forward product in FP8 (`fp8_product`); the backward as `_NF4Matmul`'s, in the compute dtype."""

    @staticmethod
    def forward(ctx, x, packed, absmax, blocksize, shape, bias, rowwise):
        ctx.save_for_backward(packed, absmax)
        ctx.blocksize, ctx.shape = blocksize, shape
        out = fp8_product(x, packed, absmax, blocksize, shape, rowwise)
        return out if bias is None else out + bias

    @staticmethod
    def backward(ctx, grad):
        return (*_gradients(ctx, grad), None)


def _forward(self, x: torch.Tensor) -> torch.Tensor:
    qs = self.weight.quant_state
    dtype = x.dtype
    if self.compute_dtype is not None:  # bitsandbytes computes in it and dequantises to it
        x = x.to(self.compute_dtype)
    bias = None if self.bias is None else self.bias.to(x.dtype)
    args = (x, self.weight, absmax_of(qs), qs.blocksize, list(qs.shape), bias)
    if self._fp8_scaling == "none":
        return _NF4Matmul.apply(*args).to(dtype)
    return _NF4MatmulFP8.apply(*args, self._fp8_scaling == "rowwise").to(dtype)


def fp8_supported(in_features: int, out_features: int) -> bool:
    """`torch._scaled_mm` needs both dimensions divisible by 16, and on CUDA an FP8 unit (compute capability 8.9,
    Ada and Hopper, or later)."""
    if in_features % 16 or out_features % 16:
        return False
    return not torch.cuda.is_available() or torch.cuda.get_device_capability() >= (8, 9)


def install(model, fp8_scaling: str = "none") -> int:
    """Replace the forward of every NF4 `Linear4bit` of `model`; returns how many. `fp8_scaling` "rowwise" or
    "tensorwise": their forward products in FP8 with those scales where `fp8_supported` (the others stay in the
    compute dtype)."""
    try:
        import bitsandbytes as bnb
    except ImportError:  # then the model has no 4-bit layers
        return 0

    count = 0
    for module in model.modules():
        qs = getattr(getattr(module, "weight", None), "quant_state", None)
        if isinstance(module, bnb.nn.Linear4bit) and qs is not None and qs.quant_type == "nf4":
            module.forward = types.MethodType(_forward, module)
            fp8 = fp8_scaling != "none" and fp8_supported(module.in_features, module.out_features)
            module._fp8_scaling = fp8_scaling if fp8 else "none"
            count += 1
    return count
