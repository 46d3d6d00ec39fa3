"""The CUDA paths: QLoRA (NF4 + bf16) with a bitsandbytes paged optimizer, and packed SFT.

Run on a GPU machine with `scripts/test.sh -m gpu`; skipped without CUDA (CI has none).
"""
import json
from pathlib import Path

import pytest

from firefly_core.models import load_for_inference
from firefly_train.cli import main

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "samples"
pytestmark = pytest.mark.gpu


def _losses(run):
    return [json.loads(line)["loss"] for line in (run / "loss.jsonl").read_text().splitlines()]


def test_qlora_pretrain_then_packed_sft_on_cuda(tiny_llama, tmp_path):
    common = ["--mode", "qlora", "--lora.r", "8", "--train_embeddings", "true", "--micro_batch_size", "4",
              "--learning_rate", "2e-2", "--lr_scheduler", "constant", "--save_steps", "5",
              "--precision", "bf16", "--optimizer", "paged_adamw_32bit"]
    pre, sft = tmp_path / "pre", tmp_path / "sft"
    assert main(["pretrain", "--model", str(tiny_llama), "--data", str(SAMPLES / "pretrain_zh.jsonl"), "-o", str(pre),
                 "--max_seq_length", "64", "--max_steps", "12", "--num_proc", "1", *common]) == 0
    losses = _losses(pre)
    assert sum(losses[-3:]) < sum(losses[:3]) - 0.3
    info = json.loads((pre / "run_info.json").read_text())
    assert info["hardware"]["device"] == "cuda" and info["peak_gpu_memory_gib"] > 0
    assert main(["sft", "--model", str(pre), "--data", str(SAMPLES / "sft_zh.jsonl"), "-o", str(sft),
                 "--max_seq_length", "128", "--max_steps", "10", "--packing", "true", *common]) == 0
    losses = _losses(sft)
    assert sum(losses[-3:]) < sum(losses[:3])
    model, tok, _ = load_for_inference(sft, device="cuda")
    ids = tok("你好", return_tensors="pt").input_ids.to("cuda")
    out = model.generate(ids, max_new_tokens=5, min_new_tokens=5, do_sample=False, pad_token_id=tok.pad_token_id)
    assert out.shape[1] == ids.shape[1] + 5
