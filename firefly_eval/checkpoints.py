"""The one place `--ckpt` is resolved for evaluation (reuses `firefly_train.models`).

Accepted: an embedded alias, a full HF model folder, a `firefly-train` checkpoint or run folder (LoRA
adapters are merged in memory onto their base; expanded vocabularies are handled).
"""
from __future__ import annotations

from firefly_train.models import Checkpoint, load_for_inference, resolve_checkpoint


def describe(ckpt: str) -> dict:
    """The `model` block every result JSON carries."""
    ck: Checkpoint = resolve_checkpoint(ckpt)
    return {"ckpt": str(ckpt), "base": str(ck.base), "adapter": str(ck.adapter) if ck.adapter else None,
            "tokenizer": str(ck.tokenizer), "base_model": ck.meta.get("base_model", str(ck.base))}


def load(ckpt: str, device: str | None = None, dtype=None):
    """(model, tokenizer, Checkpoint) ready for generation or scoring."""
    return load_for_inference(ckpt, device=device, dtype=dtype)
