"""SFT packs by default (no padding, no cross-conversation attention) and pads for custom-code models."""
import json
import shutil
from pathlib import Path

from firefly_core.models import load_tokenizer
from firefly_train.config import load_config
from firefly_train.recipes.sft import conversations, packing_supported
from firefly_train.train_config import SftConfig

SAMPLES = Path(__file__).resolve().parents[2] / "samples"


def _collated(model: Path):
    cfg = load_config(SftConfig, None, {"model": str(model), "data": [str(SAMPLES / "sft_zh.jsonl")]})
    items, collate, _ = conversations(cfg, load_tokenizer(model))
    return items[:3], collate(items[:3])


def test_default_packs_three_conversations_into_one_row(tiny_llama):
    items, batch = _collated(tiny_llama)
    lengths = [len(it["input_ids"]) for it in items]
    assert set(batch) == {"input_ids", "labels", "position_ids"} and batch["input_ids"].shape == (1, sum(lengths))
    starts = [0, lengths[0], lengths[0] + lengths[1]]
    assert [int(batch["position_ids"][0, s]) for s in starts] == [0, 0, 0]


def test_custom_modelling_code_falls_back_to_padding(tiny_llama, tmp_path, caplog):
    custom = tmp_path / "custom"
    shutil.copytree(tiny_llama, custom)
    config = json.loads((custom / "config.json").read_text())
    (custom / "config.json").write_text(json.dumps({**config, "auto_map": {"AutoModelForCausalLM": "m.M"}}))
    assert packing_supported(str(tiny_llama)) and not packing_supported(str(custom))
    items, batch = _collated(custom)
    assert "attention_mask" in batch and batch["input_ids"].shape == (3, max(len(it["input_ids"]) for it in items))
    assert "packing off" in caplog.text
