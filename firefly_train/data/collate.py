"""Batch collation: padded batches, or packed rows without padding.

With packing, `firefly_train.data.sft.pack_rows` first groups conversations into rows of up to max_seq_length
tokens, and `packed_collate` flattens a micro-batch of such rows into one row `[1, total_tokens]` whose
`position_ids` restart at 0 at each conversation and which has no `attention_mask`; the conversations' boundaries
also come as transformers' flash-attention arguments (`cu_seq_lens_q`, ...). transformers' mask builder
(`masking_utils`) turns such position ids into a block-diagonal causal mask for the sdpa, eager and flex
attention kernels as well as flash attention (and `firefly_train.varlen_attention` reads the same restarts), so
conversations never attend to each other. It does so only when no KV cache is passed: call the model with
`use_cache=False` (as training does).
"""
from __future__ import annotations

import torch
from torch.nn.utils.rnn import pad_sequence

from firefly_core.templates import IGNORE_INDEX


def _tensor(values) -> torch.Tensor:
    return values.long() if isinstance(values, torch.Tensor) else torch.tensor(values, dtype=torch.long)


def _ints(values) -> list[int]:
    return values.tolist() if isinstance(values, torch.Tensor) else values


def pad_collate(batch: list[dict], pad_id: int) -> dict:
    """Right-pad `input_ids` (with pad_id) and `labels` (with -100) to the longest sample; add attention_mask."""
    ids = [_tensor(item["input_ids"]) for item in batch]
    labels = [_tensor(item["labels"]) for item in batch]
    mask = [torch.ones(len(x), dtype=torch.long) for x in ids]
    return {"input_ids": pad_sequence(ids, batch_first=True, padding_value=pad_id),
            "labels": pad_sequence(labels, batch_first=True, padding_value=IGNORE_INDEX),
            "attention_mask": pad_sequence(mask, batch_first=True, padding_value=0)}


_RAMP: list[int] = []  # 0, 1, 2, ...: position ids sliced from one list share their int objects


def _positions(n: int) -> list[int]:
    """0..n-1. Slicing one growing list copies pointers, where range() would allocate a new int per position
    beyond 256: most of the time of packing a million conversations."""
    _RAMP.extend(range(len(_RAMP), n))
    return _RAMP[:n]


def concatenate(samples: list[dict]) -> dict[str, list[int]]:
    """One row's `input_ids`, `labels` and `position_ids` (lists of ints) from samples laid end to end.

    A sample that carries `position_ids` (a row already packed) keeps them and its labels. Any other sample
    gets positions 0..len-1 and its first label masked: that token would otherwise be predicted from the
    previous sample's last one (transformers' `DataCollatorWithFlattening(separator_id=-100)` does the same).
    """
    ids: list[int] = []
    labels: list[int] = []
    positions: list[int] = []
    for sample in samples:
        start = len(ids)
        ids += _ints(sample["input_ids"])
        labels += _ints(sample["labels"])
        if "position_ids" in sample:
            positions += _ints(sample["position_ids"])
        else:
            positions += _positions(len(ids) - start)
            labels[start] = IGNORE_INDEX
    return {"input_ids": ids, "labels": labels, "position_ids": positions}


def packed_collate(batch: list[dict], pad_to: int | None = None) -> dict:
    """One row `[1, total_tokens]`: input_ids, labels (-100 at each conversation's first token), position_ids,
    and the conversations' boundaries as transformers' flash-attention arguments (`cu_seq_lens_q/k`: cumulative
    lengths, int32; `max_length_q/k`: the longest, rounded up to a power of two: the kernels need an upper bound,
    and compiled code is specialised on the value, so it seldom changes), which flash_attention_2 and `varlen`
    use as they are and the other kernels ignore.

    `pad_to`: end the row with a segment of its own (id 0, never a label) up to this many tokens, so every
    micro-batch has the same shape, and take `pad_to / rows` (the rows' length) as the longest at least: a
    compiled model then compiles once instead of again for each new length."""
    row = concatenate(batch)
    if pad_to is not None and pad_to > len(row["input_ids"]):
        n = pad_to - len(row["input_ids"])
        row["input_ids"] += [0] * n
        row["labels"] += [IGNORE_INDEX] * n
        row["position_ids"] += _positions(n)
    out = {key: torch.tensor([values], dtype=torch.long) for key, values in row.items()}
    starts = [i for i, p in enumerate(row["position_ids"]) if p == 0] + [len(row["input_ids"])]
    cu = torch.tensor(starts, dtype=torch.int32)
    longest = max(b - a for a, b in zip(starts[:-1], starts[1:]))
    if pad_to is not None:  # the rows' length (max_seq_length): one bound for every batch, none compiles again
        longest = max(longest, pad_to // len(batch))
    longest = 1 << (longest - 1).bit_length()
    return {**out, "cu_seq_lens_q": cu, "cu_seq_lens_k": cu, "max_length_q": longest, "max_length_k": longest}
