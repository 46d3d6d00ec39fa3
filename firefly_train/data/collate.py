"""Batch collation: padded batches, or packed rows without padding.

`packed_collate` concatenates the samples of a batch into one row whose `position_ids` restart at 0 for
each sample and has no `attention_mask` (transformers' `DataCollatorWithFlattening`). transformers' mask
builder (`masking_utils`) turns such position ids into a block-diagonal causal mask for the sdpa, eager
and flex attention kernels as well as flash attention, so samples never attend to each other. It does so
only when no KV cache is passed: call the model with `use_cache=False` (as training does).
"""
from __future__ import annotations

import torch
from torch.nn.utils.rnn import pad_sequence
from transformers import DataCollatorWithFlattening

from firefly_core.templates import IGNORE_INDEX

_flatten = DataCollatorWithFlattening(return_position_ids=True, separator_id=IGNORE_INDEX)


def _tensor(values) -> torch.Tensor:
    return values.long() if isinstance(values, torch.Tensor) else torch.tensor(values, dtype=torch.long)


def pad_collate(batch: list[dict], pad_id: int) -> dict:
    """Right-pad `input_ids` (with pad_id) and `labels` (with -100) to the longest sample; add attention_mask."""
    ids = [_tensor(item["input_ids"]) for item in batch]
    labels = [_tensor(item["labels"]) for item in batch]
    mask = [torch.ones(len(x), dtype=torch.long) for x in ids]
    return {"input_ids": pad_sequence(ids, batch_first=True, padding_value=pad_id),
            "labels": pad_sequence(labels, batch_first=True, padding_value=IGNORE_INDEX),
            "attention_mask": pad_sequence(mask, batch_first=True, padding_value=0)}


def packed_collate(batch: list[dict]) -> dict:
    """One row `[1, total_tokens]`: input_ids, labels (-100 at each sample's first token), position_ids."""
    return dict(_flatten([{"input_ids": item["input_ids"], "labels": item["labels"]} for item in batch]))
