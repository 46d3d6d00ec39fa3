"""NF4 dequantisation as one Triton kernel that `torch.compile` calls from its own code (`torch.library.triton_op`).

Inductor's kernel for `nf4_linear.dequantize_nf4` computes each 16-bit output from its own byte and table entry;
on an H200 it moves about 1.5 TB/s, a third of the card's bandwidth (bench/NOTES.md). This kernel reads each
packed byte once and writes its two weights side by side. The values are the same bit for bit: the 4-bit index
looked up in the code table, times the float32 absmax of its block, rounded once to the output dtype (high
nibble first, as bitsandbytes packs them).

`dequantize(packed, absmax, code, blocksize, numel, dtype, for_backward)` is the op. `for_backward` changes
nothing in the result: it keeps the forward's and the backward's calls apart, so the compiler does not merge them
into one and keep the 16-bit weight alive from the forward to the backward.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch.library import triton_op, wrap_triton

BYTES_PER_PROGRAM = 2048


@triton.jit
def _dequantize_kernel(packed_ptr, absmax_ptr, code_ptr, out_ptr, n_bytes, numel,
                       BLOCK_BYTES: tl.constexpr, BYTES: tl.constexpr, BF16: tl.constexpr):
    pid = tl.program_id(0)
    offs = pid * BYTES + tl.arange(0, BYTES)
    inside = offs < n_bytes
    byte = tl.load(packed_ptr + offs, mask=inside, other=0)
    scale = tl.load(absmax_ptr + offs // BLOCK_BYTES, mask=inside, other=0.0)
    high = tl.load(code_ptr + (byte >> 4).to(tl.int32)) * scale
    low = tl.load(code_ptr + (byte & 15).to(tl.int32)) * scale
    values = tl.interleave(high, low)
    if BF16:  # round to nearest even by hand: Triton's interpreter truncates (the tests run there)
        bits = values.to(tl.uint32, bitcast=True)
        values = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).to(tl.uint16).to(tl.bfloat16, bitcast=True)
    else:
        values = values.to(out_ptr.dtype.element_ty)
    out = pid * 2 * BYTES + tl.arange(0, 2 * BYTES)
    tl.store(out_ptr + out, values, mask=out < numel)


def launch(packed: torch.Tensor, absmax: torch.Tensor, code: torch.Tensor, blocksize: int, numel: int,
           dtype: torch.dtype, bytes_per_program: int = BYTES_PER_PROGRAM) -> torch.Tensor:
    out = torch.empty(numel, dtype=dtype, device=packed.device)
    n_bytes = (numel + 1) // 2
    grid = (triton.cdiv(n_bytes, bytes_per_program),)
    wrap_triton(_dequantize_kernel)[grid](packed.view(-1), absmax, code, out, n_bytes, numel,
                                          BLOCK_BYTES=blocksize // 2, BYTES=bytes_per_program,
                                          BF16=dtype == torch.bfloat16)
    return out


@triton_op("firefly::dequantize_nf4", mutates_args={})
def dequantize(packed: torch.Tensor, absmax: torch.Tensor, code: torch.Tensor, blocksize: int, numel: int,
               dtype: torch.dtype, for_backward: bool) -> torch.Tensor:
    """The first `numel` weights of bitsandbytes' packed NF4 indices as a flat tensor of `dtype`."""
    return launch(packed, absmax, code, blocksize, numel, dtype)
