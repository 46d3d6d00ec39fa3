"""The decoder's attention: SDPA for a prompt's prefill, two matrix products for a one-token decoding step.

A decoding step has one query per row against a whole static cache, so it is a read of the cache's keys and
values. On an H200 SDPA's fused kernels for that masked step either do not repeat themselves (cuDNN's: 110 of
130 rows bit-identical when the same step runs again) or read the cache at about 1.9 TB/s (the memory-efficient
kernel: 4,276 tokens/s greedy against cuDNN's 7,044; bench/NOTES.md, tenth and eleventh sessions). SDPA's math
kernel computes from float32 copies of bf16 inputs (unless `allow_fp16_bf16_reduction_math_sdp` is set), so it
copies the whole cache every step (973 tokens/s). The step here computes what transformers' own eager
attention does, without copying the cache: scores as a bf16 product (float32 accumulation), the padding mask,
softmax in float32, then the product with the values. Matrix products and softmax give the same bits every run.
The query heads that share a key/value head (grouped-query attention) are laid side by side, so the keys are not
repeated either. On the H200 at the 7B's decoding shape a layer's step takes 0.467 ms (cuDNN's 0.455, the
memory-efficient kernel's 0.928) and gives the same bits every run (`bench/step_attention_speed.py`).

`STEP_ATTENTION` is registered with transformers (`AttentionInterface`, and SDPA's boolean mask under the same
name); `StaticDecoder` switches its model to it while decoding, where the model can be switched (`switchable`).
"""
from __future__ import annotations

STEP_ATTENTION = "firefly_decoding"


def step_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """transformers' attention signature: `query` [rows, heads, q, dim], `key`/`value` [rows, kv_heads, keys, dim],
    `attention_mask` SDPA's boolean [rows, 1, q, keys] (True: attend) or None. Returns ([rows, q, heads, dim], None)."""
    import torch
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    rows, heads, q_len, dim = query.shape
    if q_len != 1:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      **kwargs)
    kv_heads = key.shape[1]
    grouped = query.reshape(rows, kv_heads, heads // kv_heads, dim)
    scores = torch.matmul(grouped, key.transpose(2, 3)) * (dim ** -0.5 if scaling is None else scaling)
    if attention_mask is not None:
        scores = scores.masked_fill(~attention_mask, torch.finfo(scores.dtype).min)
    probs = torch.softmax(scores, dim=-1, dtype=torch.float32).to(value.dtype)
    return torch.matmul(probs, value).reshape(rows, 1, heads, dim), None


def register() -> str:
    """Makes `STEP_ATTENTION` a name `model.set_attn_implementation` accepts; returns it."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(STEP_ATTENTION, step_attention)
    AttentionMaskInterface.register(STEP_ATTENTION, sdpa_mask)
    return STEP_ATTENTION


def switchable(model) -> bool:
    """Whether `set_attn_implementation` can put `model` on `STEP_ATTENTION` (a model with its own attention code,
    such as a remote-code one, cannot: transformers then warns and leaves it). The model is left as it was."""
    before = model.config._attn_implementation
    model.set_attn_implementation(register())
    switched = model.config._attn_implementation == STEP_ATTENTION
    model.set_attn_implementation(before)
    return switched
