"""`firefly-train merge --ckpt CKPT_OR_RUN -o OUT`: fold a LoRA adapter (and trained embeddings) into its base.

The merge itself is `firefly_core.models.load_merged` (inference uses the same one); model and tokenizer
are saved atomically.
"""
from __future__ import annotations

from pathlib import Path

import torch

from firefly_core.errors import FireflyError
from firefly_core.io import atomic_dir
from firefly_core.models import load_merged, resolve_checkpoint

DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}


def add_arguments(p):
    p.add_argument("--ckpt", required=True, help="firefly-train checkpoint or run folder (its final/ adapter)")
    p.add_argument("-o", "--output_dir", required=True, help="folder for the merged HF model")
    p.add_argument("--dtype", choices=sorted(DTYPES), default="float16", help="dtype of the saved weights")


def merge(ckpt_ref: str, out: str | Path, dtype: torch.dtype = torch.float16) -> Path:
    ck = resolve_checkpoint(ckpt_ref)
    if ck.adapter is None:
        raise FireflyError(f"{ckpt_ref} is not a LoRA checkpoint (nothing to merge)")
    model, tokenizer = load_merged(ck, dtype)
    with atomic_dir(out) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    return Path(out)


def run(args):
    out = merge(args.ckpt, args.output_dir, DTYPES[args.dtype])
    print(f"merged model written to {out}")
