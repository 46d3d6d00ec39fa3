"""The one place `--ckpt` is resolved for evaluation (reuses `firefly_core.models`).

Accepted: an embedded alias, a full HF model folder, a `firefly-train` checkpoint or run folder (LoRA
adapters are merged in memory onto their base; expanded vocabularies are handled).
"""
from __future__ import annotations

import hashlib
from pathlib import Path

from firefly_core.models import Checkpoint, load_for_inference, resolve_checkpoint


def describe(ckpt: str) -> dict:
    """The `model` block every result JSON carries."""
    ck: Checkpoint = resolve_checkpoint(ckpt)
    return {"ckpt": str(ckpt), "base": str(ck.base), "adapter": str(ck.adapter) if ck.adapter else None,
            "tokenizer": str(ck.tokenizer), "base_model": ck.meta.get("base_model", str(ck.base))}


def fingerprint(ckpt: str) -> str:
    """Identity of the files a checkpoint loads (path, size and modification time of every file in its
    base, adapter and tokenizer folders): equal fingerprints mean the same model, so earlier work can be reused."""
    ck = resolve_checkpoint(ckpt)
    h = hashlib.sha256()
    for folder in dict.fromkeys(f for f in (ck.base, ck.adapter, ck.tokenizer) if f is not None):
        for p in sorted(Path(folder).resolve().iterdir()):
            if p.is_file():
                st = p.stat()
                h.update(f"{p}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def load(ckpt: str, device: str | None = None, dtype=None):
    """(model, tokenizer, Checkpoint) ready for generation or scoring."""
    return load_for_inference(ckpt, device=device, dtype=dtype)
