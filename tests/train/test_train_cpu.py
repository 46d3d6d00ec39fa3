"""pretrain then sft on the CPU: the loss falls, the run folder follows the contract, the checkpoint generates."""
import json
from pathlib import Path

import pytest

from firefly_core.models import load_for_inference
from firefly_train.cli import main

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "samples"


def _losses(run):
    return [json.loads(line)["loss"] for line in (run / "loss.jsonl").read_text().splitlines()]


def _check_run(run, command, base, steps):
    info = json.loads((run / "run_info.json").read_text())
    assert info["kind"] == "train_run" and info["command"] == command and info["steps"] == steps
    assert info["base_model"] == base and info["finished_at"] and info["final_loss"] == _losses(run)[-1]
    assert set(info["versions"]) >= {"torch", "transformers", "peft", "bitsandbytes", "accelerate"}
    assert all(len(d["sha256"]) == 64 for d in info["data"])
    assert list((run / "tb").glob("events.out.tfevents.*")) and (run / "config.yaml").is_file()
    meta = json.loads((run / "final" / "firefly_checkpoint.json").read_text())
    assert meta["base_model"] == base and meta["step"] == steps
    assert (run / "final" / "adapter_model.safetensors").is_file() and (run / "final" / "tokenizer.json").is_file()
    return info


def _generate(run):
    model, tok, ck = load_for_inference(run, device="cpu")
    ids = tok("你好", return_tensors="pt").input_ids
    out = model.generate(ids, max_new_tokens=5, min_new_tokens=5, do_sample=False, pad_token_id=tok.pad_token_id)
    assert out.shape[1] == ids.shape[1] + 5
    return ck


def test_tiny_qlora_pretrain_then_sft(tiny_llama, tmp_path):
    common = ["--mode", "qlora", "--lora.r", "8", "--train_embeddings", "true", "--micro_batch_size", "4", "--learning_rate", "2e-2",
              "--lr_scheduler", "constant", "--save_steps", "5", "--precision", "fp32"]
    pre, sft = tmp_path / "pre", tmp_path / "sft"
    assert main(["pretrain", "--model", str(tiny_llama), "--data", str(SAMPLES / "pretrain_zh.jsonl"),
                 "-o", str(pre), "--max_seq_length", "64", "--max_steps", "12", "--num_proc", "1", *common]) == 0
    losses = _losses(pre)
    assert len(losses) == 12 and sum(losses[-3:]) < sum(losses[:3]) - 0.3
    _check_run(pre, "pretrain", str(tiny_llama), 12)
    # sft continues the pretrain adapter; the base recorded stays the original base
    assert main(["sft", "--model", str(pre), "--data", str(SAMPLES / "sft_zh.jsonl"), "-o", str(sft),
                 "--max_seq_length", "128", "--max_steps", "10", *common]) == 0
    info = _check_run(sft, "sft", str(tiny_llama), 10)
    assert info["dropped_conversations"] == 0 and info["mode"] == "qlora"
    losses = _losses(sft)
    assert sum(losses[-3:]) < sum(losses[:3])
    assert _generate(sft).adapter == sft / "final"


@pytest.mark.slow
def test_smollm2_cpu_recipes(tmp_path):
    """The shipped CPU recipes on the embedded model (shortened)."""
    pre, sft = tmp_path / "pre", tmp_path / "sft"
    assert main(["pretrain", "--config", str(REPO / "configs" / "smollm2-cpu-pretrain.yaml"), "-o", str(pre),
                 "--data", f"[{SAMPLES / 'pretrain_zh.jsonl'},{SAMPLES / 'pretrain_en.txt'}]",
                 "--max_steps", "12"]) == 0
    losses = _losses(pre)
    assert sum(losses[-3:]) < sum(losses[:3])
    _check_run(pre, "pretrain", "smollm2-135m", 12)
    assert main(["sft", "--config", str(REPO / "configs" / "smollm2-cpu-sft.yaml"), "-o", str(sft),
                 "--model", str(pre), "--data", f"[{SAMPLES / 'sft_zh.jsonl'}]", "--max_steps", "12"]) == 0
    losses = _losses(sft)
    assert sum(losses[-3:]) < sum(losses[:3])
    _check_run(sft, "sft", "smollm2-135m", 12)
    _generate(sft)


def test_docs_list_every_config_key():
    from firefly_train.recipes.train_common import keys_table
    from firefly_train.train_config import PretrainConfig, SftConfig

    doc = (REPO / "docs" / "training.md").read_text(encoding="utf-8")
    for cls in (PretrainConfig, SftConfig):
        missing = [row for row in keys_table(cls).splitlines() if row not in doc]
        assert not missing, f"docs/training.md is stale (regenerate with --print-keys): {missing[:2]}"
