"""Per-conversation attention over packed rows with PyTorch's own variable-length FlashAttention.

A packed SFT row holds several conversations; their position ids restart at 0. transformers' `sdpa` applies a
block-diagonal mask over the whole row (every query against every key of the row, most of them masked), and its
`flash_attention_2` needs the flash-attn package. `torch.nn.attention.varlen.varlen_attn` (PyTorch >= 2.10,
CUDA) runs each conversation's causal attention alone from cumulative sequence lengths, with nothing to install.
This module registers it with transformers as `attn_implementation: varlen`: the rows are cut into segments where
the position ids restart (and at padding, which is dropped), attended segment by segment, and put back in place.

On a CPU, or a PyTorch without `varlen_attn`, each segment goes through `scaled_dot_product_attention` in a loop:
the same result, slowly (what the CPU tests compare against the dense masked path).
"""
from __future__ import annotations

import inspect

import torch
import torch.nn.functional as F
from transformers import AttentionInterface
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, flash_attention_mask

from firefly_core.errors import FireflyError

NAME = "varlen"

try:
    from torch.nn.attention.varlen import varlen_attn
    _PARAMS = set(inspect.signature(varlen_attn).parameters)
except ImportError:  # PyTorch < 2.10
    varlen_attn, _PARAMS = None, set()


def segments(position_ids: torch.Tensor | None, valid: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor, int]:
    """(indices of the kept tokens in the flattened batch or None for all, cumulative segment lengths (int32),
    longest segment). A segment starts at each row's first kept token and wherever the position ids restart."""
    batch, length = valid.shape
    starts = torch.zeros_like(valid)
    starts[:, 0] = True
    if position_ids is not None:
        starts |= position_ids.expand(batch, length) == 0
    keep = valid.flatten()
    index = None if bool(keep.all()) else keep.nonzero().squeeze(1)
    starts = starts.flatten() if index is None else starts.flatten()[index]
    if index is not None:  # a row's first kept token starts a segment even where padding came before it
        rows = index // length
        starts |= torch.cat([torch.ones(1, dtype=torch.bool, device=rows.device), rows[1:] != rows[:-1]])
    begin = starts.nonzero().squeeze(1)
    total = starts.numel()
    cu = torch.cat([begin, torch.tensor([total], device=begin.device)]).to(torch.int32)
    return index, cu, int((cu[1:] - cu[:-1]).max())


_last: list = []  # [(key, position ids, mask, segments)] of the last call: every layer of a forward shares them


def _forward_segments(position_ids, attention_mask, batch: int, length: int, device):
    """`segments` for this forward's position ids and mask, computed once for all its layers (and for their
    recomputation under checkpointing) instead of once per layer: each computation waits for the GPU. The tensors
    are held while cached, so their ids are not reused; their version counters catch in-place changes."""
    key = tuple((id(t), t._version) if t is not None else None for t in (position_ids, attention_mask)) + (
        batch, length)
    if _last and _last[0][0] == key:
        return _last[0][3]
    valid = torch.ones(batch, length, dtype=torch.bool, device=device) if attention_mask is None \
        else attention_mask[:, -length:].bool()
    found = segments(position_ids, valid)
    _last[:] = [(key, position_ids, attention_mask, found)]
    return found


def _kernel(q, k, v, cu: torch.Tensor, longest: int, scale: float) -> torch.Tensor:
    """Causal attention of each segment; q (T, Hq, D), k/v (T, Hkv, D) -> (T, Hq, D)."""
    groups = q.shape[1] // k.shape[1]
    if q.is_cuda and varlen_attn is not None:
        kwargs = {}
        if "window_size" in _PARAMS:
            kwargs["window_size"] = (-1, 0)  # causal
        else:
            kwargs["is_causal"] = True
        if groups > 1 and "enable_gqa" not in _PARAMS:
            k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
        elif groups > 1:
            kwargs["enable_gqa"] = True
        if "scale" in _PARAMS:
            kwargs["scale"] = scale
        else:  # the kernel's own scale is D^-0.5: fold the difference into q
            q = q * (scale * q.shape[-1] ** 0.5)
        dtype = q.dtype if q.dtype in (torch.float16, torch.bfloat16) else torch.bfloat16
        out = varlen_attn(q.to(dtype), k.to(dtype), v.to(dtype), cu, cu, longest, longest, **kwargs)
        return out.to(q.dtype)
    out = torch.empty_like(q)
    bounds = cu.tolist()
    for a, b in zip(bounds[:-1], bounds[1:]):
        out[a:b] = F.scaled_dot_product_attention(
            q[a:b].transpose(0, 1), k[a:b].transpose(0, 1), v[a:b].transpose(0, 1), is_causal=True, scale=scale,
            enable_gqa=groups > 1).transpose(0, 1)
    return out


def varlen_attention(module, query, key, value, attention_mask, dropout: float = 0.0, scaling: float | None = None,
                     **kwargs):
    """transformers' attention interface: query (B, Hq, S, D), key/value (B, Hkv, S, D) -> ((B, S, Hq, D), None).
    `attention_mask` is None or the 2-D padding mask (`flash_attention_mask` builds it)."""
    if dropout:
        raise FireflyError("attn_implementation 'varlen' has no attention dropout: use sdpa for this model")
    if query.shape[2] != key.shape[2]:
        raise FireflyError("attn_implementation 'varlen' is for training (no KV cache): use sdpa to generate")
    batch, heads, length, dim = query.shape
    index, cu, longest = _forward_segments(kwargs.get("position_ids"), attention_mask, batch, length, query.device)

    def tokens(x):  # (B, H, S, D) -> (kept tokens, H, D)
        flat = x.transpose(1, 2).reshape(batch * length, x.shape[1], dim)
        return flat if index is None else flat[index]

    out = _kernel(tokens(query), tokens(key), tokens(value), cu.to(query.device), longest,
                  scaling if scaling is not None else dim ** -0.5)
    if index is not None:
        full = out.new_zeros(batch * length, heads, dim)
        full[index] = out
        out = full
    return out.view(batch, length, heads, dim), None


AttentionInterface.register(NAME, varlen_attention)
ALL_MASK_ATTENTION_FUNCTIONS.register(NAME, flash_attention_mask)
