"""LoRA dropout keep masks drawn and packed in one Triton kernel: `fused_lora.keep_bits` on a GPU.

PyTorch's `rand` writes 32 bits a value to memory and a second kernel reads them back to pack the mask: in an H200
13B step the masks took 17 ms of draws and 11 ms of packing (bench/NOTES.md, seventeenth session). Here each
output byte is one Philox4x32-10 call (Triton's `tl.randint4x`, the Random123 generator PyTorch's CUDA `rand` also
uses): its four 32-bit words give the byte's 8 elements 16 bits each, and only the packed bits are written.

An element is kept when the top 12 of its 16 bits are at least `drop`: `drop` in `MASK_RESOLUTION` (4,096) is
dropped, as on the CPU. The Philox key is `seed`, one int64 drawn from PyTorch's generator for each mask, so
`torch.manual_seed` reproduces the masks and a checkpointed layer's recompute (which restores the generator)
draws the same ones; the counter is the byte's index.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch.library import triton_op, wrap_triton

BYTES_PER_PROGRAM = 1024


@triton.jit
def _two_bits(word, threshold, j: tl.constexpr):
    """Elements j and j + 1 of a byte: the low and the high 16 bits of one Philox word."""
    return (((word & 0xFFFF) >= threshold).to(tl.uint8) << j) | (((word >> 16) >= threshold).to(tl.uint8) << (j + 1))


@triton.jit
def _keep_bits_kernel(seed_ptr, out_ptr, n_bytes, threshold, BYTES: tl.constexpr):
    offs = tl.program_id(0) * BYTES + tl.arange(0, BYTES)
    w0, w1, w2, w3 = tl.randint4x(tl.load(seed_ptr), offs)
    packed = _two_bits(w0, threshold, 0) | _two_bits(w1, threshold, 2) | _two_bits(w2, threshold, 4) \
        | _two_bits(w3, threshold, 6)
    tl.store(out_ptr + offs, packed, mask=offs < n_bytes)


def launch(seed: torch.Tensor, shape: list[int], drop: int, bytes_per_program: int = BYTES_PER_PROGRAM):
    """The packed keep mask of shape `shape` (bytes) for Philox key `seed` (an int64 tensor of one value)."""
    out = torch.empty(shape, dtype=torch.uint8, device=seed.device)
    n_bytes = out.numel()
    if n_bytes >= 1 << 31:
        raise ValueError(f"a dropout mask of {n_bytes} bytes is beyond the kernel's 31-bit counter")
    grid = (triton.cdiv(n_bytes, bytes_per_program),)
    wrap_triton(_keep_bits_kernel)[grid](seed, out, n_bytes, drop << 4, BYTES=bytes_per_program)
    return out


@triton_op("firefly::keep_bits", mutates_args={})
def keep_bits(seed: torch.Tensor, shape: list[int], drop: int) -> torch.Tensor:
    """Bit j of byte i is element 8i + j's keep flag: kept with probability 1 - drop / 4,096."""
    return launch(seed, shape, drop)
