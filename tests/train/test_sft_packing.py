"""SFT packs by default: conversations grouped into rows of up to max_seq_length tokens (no padding, no
cross-conversation attention), a micro-batch of such rows flattened into one; custom-code models are padded."""
import json
import math
import random
import shutil
from pathlib import Path

import pytest

from firefly_core.models import load_tokenizer
from firefly_core.templates import IGNORE_INDEX
from firefly_train.config import load_config
from firefly_train.data.sft import pack_rows
from firefly_train.recipes.sft import conversations, packing_supported
from firefly_train.train_config import SftConfig

SAMPLES = Path(__file__).resolve().parents[2] / "samples"


def _items(lengths: list[int]) -> list[dict]:
    """Conversation i is tokens 1000*i + 0, 1, ...: every token says which conversation it came from."""
    return [{"input_ids": [1000 * i + j for j in range(n)], "labels": [1000 * i + j for j in range(n)]}
            for i, n in enumerate(lengths)]


def _split(row: dict) -> list[dict]:
    """A packed row cut where its position ids restart."""
    starts = [t for t, p in enumerate(row["position_ids"]) if p == 0] + [len(row["input_ids"])]
    return [{k: row[k][a:b] for k in row} for a, b in zip(starts, starts[1:])]


def _lognormal_lengths(n: int, cap: int, seed: int = 0) -> list[int]:
    """Chat-like lengths: median 300, 90th percentile about 900 (as bench/train_throughput.py's sft mix)."""
    rng = random.Random(seed)
    return [max(8, min(cap, round(rng.lognormvariate(math.log(300), 0.857)))) for _ in range(n)]


def _sequential_rows(lengths: list[int], max_len: int) -> int:
    """Rows needed when each conversation goes into the current row, or a new one if it does not fit."""
    rows, room = 0, 0
    for n in lengths:
        if n > room:
            rows, room = rows + 1, max_len
        room -= n
    return rows


def test_pack_rows_puts_every_conversation_once_and_restarts_positions():
    lengths = [5, 9, 3, 10, 1, 7, 7, 2, 6]
    items = _items(lengths)
    rows = pack_rows(items, 10)
    assert all(set(row) == {"input_ids", "labels", "position_ids"} for row in rows)
    assert all(len(row["input_ids"]) == len(row["labels"]) == len(row["position_ids"]) <= 10 for row in rows)
    pieces = [piece for row in rows for piece in _split(row)]
    assert sorted(p["input_ids"] for p in pieces) == sorted(it["input_ids"] for it in items)  # each exactly once
    for piece in pieces:
        n = len(piece["input_ids"])
        assert piece["position_ids"] == list(range(n))
        assert piece["labels"] == [IGNORE_INDEX] + piece["input_ids"][1:]  # no loss across a boundary
    assert len(rows) == 6  # the fewest: no two of 10, 9, 7, 7, 6, 5 fit one row
    assert pack_rows(items, 10) == rows  # deterministic


def test_pack_rows_breaks_ties_by_original_order_and_refuses_an_overlong_conversation():
    rows = pack_rows(_items([4, 4, 4]), 8)
    assert [[t // 1000 for t in row["input_ids"][::4]] for row in rows] == [[0, 1], [2]]
    with pytest.raises(ValueError, match="11 tokens"):
        pack_rows(_items([3, 11]), 10)


def test_pack_rows_fills_rows_of_a_lognormal_mix():
    lengths = _lognormal_lengths(2000, 1024)
    rows = pack_rows(_items(lengths), 1024)
    fewest = math.ceil(sum(lengths) / 1024)
    assert len(rows) <= fewest + 2 < _sequential_rows(lengths, 1024) * 0.9
    assert sorted(len(p["input_ids"]) for row in rows for p in _split(row)) == sorted(lengths)


def _config(model: Path, **overrides):
    return load_config(SftConfig, None, {"model": str(model), "data": [str(SAMPLES / "sft_zh.jsonl")], **overrides})


def test_default_packs_conversations_into_rows_of_max_seq_length(tiny_llama, caplog):
    caplog.set_level("INFO")
    tok = load_tokenizer(tiny_llama)
    cfg = _config(tiny_llama, max_seq_length=256)
    rows, collate, stats = conversations(cfg, tok)
    assert stats["packed_rows"] == len(rows) < stats["kept"]
    assert all(len(row["input_ids"]) <= 256 for row in rows)
    assert sum(len(_split(row)) for row in rows) == stats["kept"]
    assert sum(len(row["input_ids"]) for row in rows) == stats["tokens"]
    assert f"{stats['kept']} conversations into {len(rows)} rows" in caplog.text
    batch = collate(rows[:3])  # a micro-batch of 3 rows: one row, each conversation's positions restarting
    assert "attention_mask" not in batch
    n = sum(len(row["input_ids"]) for row in rows[:3])
    assert batch["input_ids"].shape[1] == cfg.micro_batch_size * 256 > n  # padded: one shape for every batch
    assert batch["position_ids"][0, :n].tolist() == sum((row["position_ids"] for row in rows[:3]), [])
    assert batch["labels"][0, :n].tolist() == sum((row["labels"] for row in rows[:3]), [])
    assert (batch["labels"][0, n:] == -100).all()
    assert len(batch["cu_seq_lens_q"]) == sum(len(_split(row)) for row in rows[:3]) + 2  # and the padding's


def test_custom_modelling_code_falls_back_to_padding(tiny_llama, tmp_path, caplog):
    custom = tmp_path / "custom"
    shutil.copytree(tiny_llama, custom)
    config = json.loads((custom / "config.json").read_text())
    (custom / "config.json").write_text(json.dumps({**config, "auto_map": {"AutoModelForCausalLM": "m.M"}}))
    assert packing_supported(str(tiny_llama)) and not packing_supported(str(custom))
    items, collate, stats = conversations(_config(custom), load_tokenizer(custom))
    batch = collate(items[:3])
    assert "packed_rows" not in stats and len(items) == stats["kept"]
    assert "attention_mask" in batch and batch["input_ids"].shape == (3, max(len(it["input_ids"]) for it in items[:3]))
    assert "packing off" in caplog.text
