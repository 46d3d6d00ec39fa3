"""`firefly-train pretrain`: continued pretraining on raw text (.jsonl/.txt/.csv packed into blocks)."""
from __future__ import annotations

import torch

from firefly_core.models import cache_dir
from firefly_train.recipes.train_common import ACCEPTS_OVERRIDES, add_arguments, train_or_print_keys  # noqa: F401
from firefly_train.train_config import PretrainConfig


def blocks(cfg, tokenizer):
    from firefly_train.data.pretrain import build_pretrain_blocks

    dataset, stats = build_pretrain_blocks(cfg.data, tokenizer, cfg.max_seq_length, cache_dir() / "data",
                                           num_proc=cfg.num_proc)
    return dataset, lambda items: {k: torch.stack([it[k] for it in items]) for k in ("input_ids", "labels")}, stats


def run(args):
    info = train_or_print_keys(PretrainConfig, "pretrain", blocks, args)
    if info:  # main process only
        print(f"pretrain: {info['steps']} steps, {info['tokens']} tokens, final loss {info['final_loss']:.4f}")
