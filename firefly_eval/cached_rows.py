"""Run token rows over already-computed keys/values, with the attention call a full causal pass would make.

A multiple-choice question's choices share its context; an MMLU subject's questions share their few-shot block.
Computing the shared part once and each row's own tokens over its cached keys/values saves most of the work,
since the linear layers (nearly all of a forward pass) then run on the own tokens only. To give the same numbers
as the full pass *bit for bit* (lm-eval's `HFLM` runs `context + continuation` as one right-padded row through
SDPA with `is_causal`; on an H200 that is cuDNN's causal kernel, and every masked kernel rounds differently:
`bench/NOTES.md`, ninth session), the attention call here is the full pass's own:

- each row's keys/values are laid out as in that full row: its cached positions first, from position 0, then its
  own tokens, then padding;
- its queries sit at their own positions of a full-width query tensor, zeros elsewhere;
- transformers' SDPA attention runs on that with `is_causal`, as for the full row; the own positions' outputs
  are taken back out.

A query row's output depends only on itself and the keys/values at or before its position, so the zero rows
change nothing but cost attention work (a few percent of a forward pass).

Use: `with rows_over(model, pool, cached, own) as capture: model.get_decoder()(input_ids=..., position_ids=...)`.
`pool` holds, per layer, the cached keys and values as `[positions, kv_heads, head_dim]`; `cached[r]` lists the
pool positions row `r` sees first, in order; every row has `own` tokens (right-padded). `capture` receives each
layer's keys/values of the rows' own tokens when the caller wants to cache them in turn (a question's context
over a shared few-shot prefix, then its continuations over both).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

ATTENTION = "firefly_rows_over_cache"


@dataclass
class _Rows:
    pool: list[tuple[torch.Tensor, torch.Tensor]]
    index: torch.Tensor  # [rows, width]: each key position's source in cat(pool, own tokens)
    own_at: torch.Tensor  # [rows, own]: where each own token sits in its row
    capture: list[tuple[torch.Tensor, torch.Tensor]] | None


_active: list[_Rows] = []


def _attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    spec = _active[-1]
    rows, heads, own, dim = key.shape
    if spec.capture is not None:
        spec.capture.append((key, value))
    width = spec.index.shape[1]
    full = []
    for pooled, new in zip(spec.pool[module.layer_idx], (key, value)):  # as [rows, width, heads, dim], like a
        source = torch.cat([pooled, new.transpose(1, 2).reshape(rows * own, heads, dim)])  # projection's output
        full.append(source[spec.index].transpose(1, 2))
    at = spec.own_at[:, :, None, None].expand(-1, -1, query.shape[1], dim)
    queries = query.new_zeros(rows, width, query.shape[1], dim).scatter_(1, at, query.transpose(1, 2))
    out, _ = sdpa_attention_forward(module, queries.transpose(1, 2), full[0], full[1], None, dropout=0.0,
                                    scaling=scaling)
    return out.gather(1, at), None  # [rows, own, heads, dim], as transformers' attention functions return


def _register() -> None:
    from transformers import AttentionInterface, AttentionMaskInterface

    if ATTENTION not in AttentionInterface._global_mapping:
        AttentionInterface.register(ATTENTION, _attention)
        AttentionMaskInterface.register(ATTENTION, lambda *a, **k: None)


def layout(cached: list[torch.Tensor], own: int, pool_size: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """(key source index [rows, width], own token positions [rows, own]) for rows whose `own` tokens follow their
    cached positions `cached[r]` (indices into a pool of `pool_size` positions); padding keys repeat position 0
    (after every real query of the row, so never attended)."""
    width = max(len(c) for c in cached) + own
    index = torch.zeros(len(cached), width, dtype=torch.long)
    own_at = torch.zeros(len(cached), own, dtype=torch.long)
    for r, c in enumerate(cached):
        n = len(c)
        index[r, :n] = c
        index[r, n:n + own] = pool_size + r * own + torch.arange(own)
        own_at[r] = n + torch.arange(own)
    return index.to(device), own_at.to(device)


@contextlib.contextmanager
def rows_over(model, pool: list[tuple[torch.Tensor, torch.Tensor]], cached: list[torch.Tensor], own: int,
              capture: bool = False):
    """Within the block, the model's attention runs rows of `own` tokens over their cached keys/values (see
    the module docstring); yields the list that collects each layer's own keys/values when `capture`."""
    _register()
    first_k = pool[0][0]
    index, own_at = layout(cached, own, first_k.shape[0], first_k.device)
    spec = _Rows(pool, index, own_at, [] if capture else None)
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
    `[rows * length, kv_heads, dim]`: row `q`'s position `t` is pool position `q * length + t`."""
    out = []
    for k, v in cache_layers:
        rows, heads, length, dim = k.shape
        out.append(tuple(x.transpose(1, 2).reshape(rows * length, heads, dim) for x in (k, v)))
    return out
