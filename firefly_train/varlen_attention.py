"""Per-conversation attention over packed rows with PyTorch's own variable-length FlashAttention.

A packed SFT row holds several conversations; their position ids restart at 0. transformers' `sdpa` applies a
block-diagonal mask over the whole row (every query against every key of the row, most of them masked), and its
`flash_attention_2` needs the flash-attn package. `torch.nn.attention.varlen.varlen_attn` (PyTorch >= 2.10,
CUDA) runs each conversation's causal attention alone from cumulative sequence lengths, with nothing to install.
This module registers it with transformers as `attn_implementation: varlen`: the rows are cut into segments where
the position ids restart (and at padding, which is dropped), attended segment by segment, and put back in place.
The segments arrive as transformers' flash-attention keyword arguments (`cu_seq_lens_q`, `max_length_q`, ...):
from the batch (`packed_collate`) or from `install`'s hook, once per forward.

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


def install(model) -> None:
    """Compute a forward's segments once, before its decoder layers, for every layer (and for their recomputation
    under checkpointing): a forward pre-hook on the decoder stack adds them to the keyword arguments that
    transformers hands to each layer's attention, unless the batch brings them (`packed_collate` does, computed on
    the CPU). Computing them inside the layers would wait for the GPU in every layer, and stops `torch.compile` at
    each layer (data-dependent sizes)."""
    model.base_model.register_forward_pre_hook(_add_segments, with_kwargs=True)


def _add_segments(module, args, kwargs):
    if kwargs.get("cu_seq_lens_q") is not None:
        # their number changes from batch to batch: compile for any from the start, not again at the second
        torch._dynamo.maybe_mark_dynamic(kwargs["cu_seq_lens_q"], 0)
        return None
    inputs = kwargs["input_ids"] if kwargs.get("input_ids") is not None else kwargs["inputs_embeds"]
    batch, length = inputs.shape[:2]
    mask = kwargs.get("attention_mask")
    if mask is not None and mask.dim() != 2:
        raise FireflyError("attn_implementation 'varlen' takes a 2-D padding mask (or none), got a "
                           f"{mask.dim()}-D attention_mask")
    valid = torch.ones(batch, length, dtype=torch.bool, device=inputs.device) if mask is None \
        else mask[:, -length:].bool()
    index, cu, longest = segments(kwargs.get("position_ids"), valid)
    kwargs.update(cu_seq_lens_q=cu, cu_seq_lens_k=cu, max_length_q=longest, max_length_k=longest)
    if index is not None:
        kwargs["varlen_index"] = index
    return args, kwargs


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
    cu, longest, index = kwargs.get("cu_seq_lens_q"), kwargs.get("max_length_q"), kwargs.get("varlen_index")
    if cu is None:
        raise FireflyError("attn_implementation 'varlen' found no segments: call firefly_train.varlen_attention."
                           "install(model) once (firefly-train's model loading does)")

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
