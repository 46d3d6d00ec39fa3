"""Causal-LM cross-entropy without the full logits tensor.

With a 55,296-token vocabulary, a micro-batch of 8 x 1024 tokens has 8,192 x 55,296 logits: 0.9 GB in
bf16, 1.8 GB once transformers upcasts them to fp32 for the loss, and as much again for their gradient.
`chunked_head_loss(model, chunk_tokens)`, a context manager around the training forward, makes the output
head return its input and the model's loss function apply the real head to the labelled positions only
(none of an SFT prompt's), `chunk_tokens` at a time under activation checkpointing, so at most one chunk's
logits exist at once. The value is transformers' `ForCausalLMLoss`: the mean over labelled next tokens.

Only model types whose forward is exactly `logits = self.lm_head(hidden)` then `self.loss_function(...)`
are allowed (no logit soft-capping or scaling in between); the others keep transformers' loss.
"""
from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

MODEL_TYPES = frozenset({"llama", "mistral", "mixtral", "qwen2", "qwen2_moe", "qwen3", "falcon", "gemma", "phi3"})


def causal_model(model):
    """The transformers CausalLM inside a peft wrapper (or the model itself)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def supported(model) -> bool:
    return getattr(causal_model(model).config, "model_type", None) in MODEL_TYPES


def chunked_cross_entropy(hidden: torch.Tensor, labels: torch.Tensor, project, chunk_tokens: int,
                          ignore_index: int = -100, shift_labels: torch.Tensor | None = None,
                          num_items_in_batch: torch.Tensor | int | None = None) -> torch.Tensor:
    """Next-token cross-entropy of `project(hidden)` against `labels`, as transformers computes it."""
    if shift_labels is None:
        shift_labels = F.pad(labels, (0, 1), value=ignore_index)[..., 1:]
    targets = shift_labels.reshape(-1).to(hidden.device)
    rows = (targets != ignore_index).nonzero().squeeze(1)
    flat = hidden.reshape(-1, hidden.shape[-1]).index_select(0, rows)
    targets = targets.index_select(0, rows)

    def chunk_loss(h, y):
        return F.cross_entropy(project(h).float(), y, reduction="sum")

    total = sum(checkpoint(chunk_loss, flat[s:s + chunk_tokens], targets[s:s + chunk_tokens], use_reentrant=False)
                for s in range(0, len(targets), chunk_tokens))
    if not torch.is_tensor(total):  # no labelled token: zero, still on the graph (transformers' mean is nan)
        return (hidden.sum() * 0.0).float()
    count = num_items_in_batch if num_items_in_batch is not None else len(targets)
    return total / (count.to(total.device) if torch.is_tensor(count) else count)


@contextlib.contextmanager
def chunked_head_loss(model, chunk_tokens: int):
    """Within the block, `model(..., labels=...)` computes its loss by `chunked_cross_entropy`."""
    causal = causal_model(model)
    if not supported(causal):
        raise ValueError(f"chunked loss does not support model type {causal.config.model_type!r}")
    head = causal.get_output_embeddings()
    project = head.forward
    calls = []

    def loss_function(logits, labels, vocab_size=None, num_items_in_batch=None, ignore_index=-100,
                      shift_labels=None, **kwargs):
        calls.append(1)
        return chunked_cross_entropy(logits, labels, project, chunk_tokens, ignore_index, shift_labels,
                                     num_items_in_batch)

    head.forward = lambda hidden: hidden  # instance attribute: the module tree and state dict stay as they were
    causal.loss_function = loss_function
    try:
        yield
    finally:
        del head.forward
        del causal._loss_function  # transformers' setter stores it here; the property falls back to its own
    if not calls:
        raise RuntimeError("the forward inside chunked_head_loss computed no loss (no labels given?)")
