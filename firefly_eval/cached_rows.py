"""Run token rows that attend to already-computed keys/values, laid out exactly as one full causal pass would.

A multiple-choice question's choices share its context; an MMLU subject's questions share their few-shot block.
Computing the shared part once and each row's own tokens over its cached keys/values is the obvious saving. To
give the same numbers as the full pass *bit for bit* (lm-eval's `HFLM` runs `context + continuation` as one
right-padded row under SDPA's causal kernel), each row's keys here are laid out as in that full row: its cached
positions first, from position 0, then its own tokens, then padding. Only the queries are fewer. A row's
attention output then depends on the same keys in the same tiles; the additive mask lets query `j` of row `r`
see keys `0 .. cached_r + j`.

Use: `with rows_over(model, pool, cached) as capture: model.get_decoder()(input_ids=..., position_ids=...)`.
`pool` holds, per layer, the cached keys and values as `[kv_heads, positions, head_dim]`; `cached[r]` lists the
pool positions row `r` sees first, in order. `capture` receives each layer's keys/values of the rows' own tokens
when the caller wants to cache them in turn (a question's context over a shared few-shot prefix, then its
continuations over both).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
import torch.nn.functional as F

ATTENTION = "firefly_rows_over_cache"


@dataclass
class _Rows:
    pool: list[tuple[torch.Tensor, torch.Tensor]]
    index: torch.Tensor  # [rows, width] into cat(pool positions, own positions)
    mask: torch.Tensor  # [rows, 1, own width, width] additive, in the queries' dtype
    capture: list[tuple[torch.Tensor, torch.Tensor]] | None


_active: list[_Rows] = []


def keys_values(module, key: torch.Tensor, value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The active rows' full keys and values `[rows, heads, width, dim]`: cached positions, then their own."""
    from transformers.integrations.sdpa_attention import repeat_kv

    spec = _active[-1]
    rows, heads, own, dim = key.shape
    if spec.capture is not None:
        spec.capture.append((key, value))
    pool_k, pool_v = spec.pool[module.layer_idx]
    full = []
    for pooled, new in ((pool_k, key), (pool_v, value)):
        source = torch.cat([pooled, new.transpose(0, 1).reshape(heads, rows * own, dim)], dim=1)
        full.append(repeat_kv(source[:, spec.index].transpose(0, 1), getattr(module, "num_key_value_groups", 1)))
    return full[0], full[1]


def _attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **_):
    k, v = keys_values(module, key, value)
    out = F.scaled_dot_product_attention(query, k, v, attn_mask=_active[-1].mask, scale=scaling)
    return out.transpose(1, 2).contiguous(), None


def _register() -> None:
    from transformers import AttentionInterface, AttentionMaskInterface

    if ATTENTION not in AttentionInterface._global_mapping:
        AttentionInterface.register(ATTENTION, _attention)
        AttentionMaskInterface.register(ATTENTION, lambda *a, **k: None)


def layout(cached: list[torch.Tensor], own: int, pool_size: int, dtype: torch.dtype,
           device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Key index and additive mask for rows whose own tokens (right-padded to `own`) follow their cached
    positions `cached[r]` (indices into a pool of `pool_size` positions)."""
    width = max(len(c) for c in cached) + own
    index = torch.zeros(len(cached), width, dtype=torch.long)
    allowed = torch.zeros(len(cached), own, width, dtype=torch.bool)
    query = torch.arange(own)[:, None]
    for r, c in enumerate(cached):
        n = len(c)
        index[r, :n] = c
        index[r, n:n + own] = pool_size + r * own + torch.arange(own)
        allowed[r] = torch.arange(width)[None, :] <= n + query
    mask = torch.zeros(allowed.shape, dtype=dtype).masked_fill_(~allowed, torch.finfo(dtype).min)
    return index.to(device), mask[:, None].to(device)


@contextlib.contextmanager
def rows_over(model, pool: list[tuple[torch.Tensor, torch.Tensor]], cached: list[torch.Tensor], own: int,
              capture: bool = False):
    """Within the block, the model's attention runs rows of `own` tokens over their cached keys/values (see
    the module docstring); yields the list that collects each layer's own keys/values when `capture`."""
    _register()
    first_k = pool[0][0]
    index, mask = layout(cached, own, first_k.shape[1], first_k.dtype, first_k.device)
    spec = _Rows(pool, index, mask, [] if capture else None)
    previous = model.config._attn_implementation
    model.set_attn_implementation(ATTENTION)
    _active.append(spec)
    try:
        yield spec.capture
    finally:
        _active.pop()
        model.set_attn_implementation(previous)


def pool_of(cache_layers: list[tuple[torch.Tensor, torch.Tensor]]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per layer `[rows, kv_heads, length, dim]` keys/values (a batch's cache) as one pool
    `[kv_heads, rows * length, dim]`: row `q`'s position `t` is pool position `q * length + t`."""
    out = []
    for k, v in cache_layers:
        rows, heads, length, dim = k.shape
        out.append(tuple(x.transpose(0, 1).reshape(heads, rows * length, dim) for x in (k, v)))
    return out
