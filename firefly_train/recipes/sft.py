"""`firefly-train sft`: multi-turn instruction tuning, loss on the assistant replies only."""
from __future__ import annotations

import json
import logging
from functools import partial

from firefly_core.models import resolve_checkpoint
from firefly_core.templates import get_template
from firefly_train.data.sft import build_sft_dataset, pack_rows
from firefly_train.recipes.train_common import ACCEPTS_OVERRIDES, add_arguments, train_or_print_keys  # noqa: F401
from firefly_train.train_config import SftConfig

log = logging.getLogger(__name__)


def packing_supported(model_ref: str) -> bool:
    """Packed rows rely on transformers' own attention masking (block-diagonal from position ids); a model
    with custom modelling code (config.json `auto_map`, e.g. Baichuan 2, InternLM 2) may not honour it."""
    config = resolve_checkpoint(model_ref).base / "config.json"
    return not (config.is_file() and "auto_map" in json.loads(config.read_text(encoding="utf-8")))


def conversations(cfg, tokenizer):
    from firefly_train.data.collate import packed_collate, pad_collate

    items, stats = build_sft_dataset(cfg.data, tokenizer, get_template(cfg.template, tokenizer), cfg.max_seq_length)
    packing = cfg.packing and packing_supported(cfg.model)
    if cfg.packing and not packing:
        log.warning("packing off: %s has custom modelling code (auto_map); batches are padded instead", cfg.model)
    if not packing:
        return items, partial(pad_collate, pad_id=tokenizer.pad_token_id), stats
    rows = pack_rows(items, cfg.max_seq_length)
    log.info("packing: %d conversations into %d rows of up to %d tokens (%.1f%% full)", len(items), len(rows),
             cfg.max_seq_length, 100 * stats["tokens"] / (len(rows) * cfg.max_seq_length))
    return rows, partial(packed_collate, pad_to=cfg.micro_batch_size * cfg.max_seq_length), {
        **stats, "packed_rows": len(rows)}


def run(args):
    info = train_or_print_keys(SftConfig, "sft", conversations, args)
    if info:  # main process only
        print(f"sft: {info['steps']} steps, {info['tokens']} tokens, final loss {info['final_loss']:.4f}, "
              f"{info['dropped_conversations']} conversations dropped (no trainable token)")
