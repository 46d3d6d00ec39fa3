"""NF4 linear layers that `torch.compile` can see into: the 4-bit base weight dequantised by torch ops.

bitsandbytes' `Linear4bit` reaches its CUDA kernels through Python op implementations (absmax, weight, then
`F.linear`), about 0.3 ms of CPU a call; a compiled 7B decoder layer spends most of its CPU time there, and a
QLoRA step at micro-batch 8 waits on the CPU for a tenth of its time (bench/NOTES.md). Written as torch ops,
the dequantisation compiles into one fused kernel launched from the layer's compiled code, with the same
result bit for bit: each weight is `code[4-bit index] * absmax` of its block in float32, rounded once to the
compute dtype, and a double-quantised absmax is `code2[8-bit index] * absmax2 + offset`, as bitsandbytes
computes them.

`install(model)` swaps the forward of every NF4 `Linear4bit` on the instance (the module, its parameters and
saved checkpoints are unchanged). The product runs in an autograd Function that saves only the 4-bit weight
and dequantises it again for the input gradient, as bitsandbytes does: a 16-bit copy of every weight is never
kept. Eager code gains nothing from this (the torch ops are slower than bitsandbytes' kernel there), so
firefly-train installs it only with `compile_layers`.

With `fp8_scaling` (config `fp8_base_products`) the forward product runs in FP8 (`fp8_product`): the weight
dequantised in float32 as above, then rounded to e4m3 with a scale per output row and the input with one per
token row ("rowwise"), or each with one scale ("tensorwise"); `torch._scaled_mm` accumulates in float32. The
backward is the same as without it.
"""
from __future__ import annotations

import types

import torch
import torch.nn.functional as F


def _per_block(values: torch.Tensor, scale: torch.Tensor, block: int, scale_first: bool = False) -> torch.Tensor:
    """Flat `values` times the scale of their block of `block` values (the last block may be partial)."""
    n = values.numel()
    if n % block == 0:
        values, scale = values.view(-1, block), scale.view(-1, 1)
    else:
        scale = scale.repeat_interleave(block)[:n]
    return (scale * values if scale_first else values * scale).reshape(-1)


def absmax_of(qs) -> torch.Tensor:
    """The float32 absmax of each block, undoing double quantisation."""
    if not qs.nested:
        return qs.absmax
    return _per_block(qs.state2.code[qs.absmax.int()], qs.state2.absmax, qs.state2.blocksize) + qs.offset


def dequantize_nf4(packed: torch.Tensor, absmax: torch.Tensor, code: torch.Tensor, blocksize: int,
                   shape: torch.Size, dtype: torch.dtype, for_backward: bool = False) -> torch.Tensor:
    """The weight of `shape` in `dtype` from bitsandbytes' packed 4-bit indices (high nibble first).

    `for_backward` takes the nibbles apart and scales them with other ops, to the same values bit for bit: the
    backward's dequantisation must share no step with the forward's, or the compiler's common-subexpression
    pass merges them and keeps that step's output (the 16-bit weight, or the unpacked indices) alive from the
    forward to the backward."""
    flat = packed.view(-1)
    high, low = (flat // 16, flat % 16) if for_backward else (flat >> 4, flat & 15)
    values = code[torch.stack([high, low], dim=-1).view(-1)[:shape.numel()].int()]
    return _per_block(values, absmax, blocksize, scale_first=for_backward).to(dtype).view(shape)


FP8 = torch.float8_e4m3fn
FP8_MAX = torch.finfo(FP8).max  # 448


def to_fp8(values: torch.Tensor, rowwise: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """A 2-D float tensor as e4m3 and its float32 scale: the largest magnitude / 448 of each row (rowwise), or
    of the whole tensor."""
    values = values.float()
    amax = values.abs().amax(dim=1, keepdim=True) if rowwise else values.abs().amax()
    scale = amax.clamp(min=torch.finfo(torch.float32).tiny) / FP8_MAX
    return (values / scale).to(FP8), scale


def fp8_product(x: torch.Tensor, packed: torch.Tensor, absmax: torch.Tensor, code: torch.Tensor, blocksize: int,
                shape: torch.Size, rowwise: bool) -> torch.Tensor:
    """x @ W^T with both operands in e4m3: W dequantised from NF4 in float32 (`dequantize_nf4`), then rounded
    to e4m3 with a scale per output row and x with one per token row (rowwise: CUTLASS's kernels on Hopper), or
    each with one scale (cuBLAS's); `torch._scaled_mm` accumulates in float32 and returns x's dtype."""
    weight, weight_scale = to_fp8(dequantize_nf4(packed, absmax, code, blocksize, shape, torch.float32), rowwise)
    rows, row_scale = to_fp8(x.reshape(-1, shape[1]), rowwise)
    return scaled_mm(rows, row_scale, weight, weight_scale, x.dtype).view(*x.shape[:-1], shape[0])


def scaled_mm(rows: torch.Tensor, row_scale: torch.Tensor, weight: torch.Tensor, weight_scale: torch.Tensor,
              out_dtype: torch.dtype) -> torch.Tensor:
    """rows @ weight^T for e4m3 operands and their float32 scales (`to_fp8`): `torch._scaled_mm`, float32 sums."""
    return torch._scaled_mm(rows, weight.t(), scale_a=row_scale, scale_b=weight_scale.t(), out_dtype=out_dtype)


def _gradients(ctx, grad) -> tuple:
    """The input's and the bias's gradients (W dequantised again, in grad's dtype), None for the other inputs."""
    packed, absmax, code = ctx.saved_tensors
    grad_x = grad_bias = None
    if ctx.needs_input_grad[0]:
        weight = dequantize_nf4(packed, absmax, code, ctx.blocksize, ctx.shape, grad.dtype, for_backward=True)
        grad_x = grad @ weight
    if ctx.needs_input_grad[6]:
        grad_bias = grad.reshape(-1, grad.shape[-1]).sum(0, dtype=torch.float32).to(grad.dtype)
    return grad_x, None, None, None, None, None, grad_bias


class _NF4Matmul(torch.autograd.Function):
    """x @ W^T + bias for a frozen NF4 weight W; the backward dequantises W again (nothing 16-bit is saved)."""

    @staticmethod
    def forward(ctx, x, packed, absmax, code, blocksize, shape, bias):
        ctx.save_for_backward(packed, absmax, code)
        ctx.blocksize, ctx.shape = blocksize, shape
        return F.linear(x, dequantize_nf4(packed, absmax, code, blocksize, shape, x.dtype), bias)

    @staticmethod
    def backward(ctx, grad):
        return _gradients(ctx, grad)


class _NF4MatmulFP8(torch.autograd.Function):
    """The forward product in FP8 (`fp8_product`); the backward as `_NF4Matmul`'s, in the compute dtype."""

    @staticmethod
    def forward(ctx, x, packed, absmax, code, blocksize, shape, bias, rowwise):
        ctx.save_for_backward(packed, absmax, code)
        ctx.blocksize, ctx.shape = blocksize, shape
        out = fp8_product(x, packed, absmax, code, blocksize, shape, rowwise)
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
    args = (x, self.weight, absmax_of(qs), qs.code, qs.blocksize, qs.shape, bias)
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
