"""Merge an adapter trained on an expanded vocabulary (with trained embeddings) into a full model."""
import json
from pathlib import Path

import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer

from firefly_train.cli import main

REPO = Path(__file__).resolve().parents[2]
NEW_TOKENS = ["人工智能", "机器学习", "深度学习", "语言模型", "中文分词", "自然语言"]


def test_merge_expanded_vocabulary_matches_peft_logits(tiny_llama, tmp_path):
    tok = AutoTokenizer.from_pretrained(tiny_llama)
    old = len(tok)
    assert tok.add_tokens(NEW_TOKENS) == len(NEW_TOKENS)
    tok.save_pretrained(tmp_path / "tok")
    run = tmp_path / "run"
    assert main(["pretrain", "--model", str(tiny_llama), "--tokenizer", str(tmp_path / "tok"),
                 "--data", str(REPO / "samples" / "pretrain_zh.jsonl"), "-o", str(run), "--mode", "lora",
                 "--train_embeddings", "true", "--lora.r", "4", "--max_seq_length", "32", "--micro_batch_size", "2",
                 "--max_steps", "3", "--learning_rate", "1e-2", "--precision", "fp32", "--num_proc", "1"]) == 0
    meta = json.loads((run / "final" / "firefly_checkpoint.json").read_text())
    assert meta["vocab_size"] == old + len(NEW_TOKENS) and meta["train_embeddings"] is True

    assert main(["merge", "--ckpt", str(run), "-o", str(tmp_path / "merged"), "--dtype", "float32"]) == 0
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "merged", dtype=torch.float32).eval()
    assert merged.config.vocab_size == old + len(NEW_TOKENS)
    assert len(AutoTokenizer.from_pretrained(tmp_path / "merged")) == old + len(NEW_TOKENS)

    base = AutoModelForCausalLM.from_pretrained(tiny_llama, dtype=torch.float32)
    base.resize_token_embeddings(meta["vocab_size"], mean_resizing=False)
    peft_model = PeftModel.from_pretrained(base, str(run / "final")).eval()
    ids = tok("人工智能和机器学习是深度学习的基础", return_tensors="pt").input_ids
    assert (ids >= old).any(), "the text must use the added tokens"
    with torch.no_grad():
        want, got = peft_model(input_ids=ids).logits, merged(input_ids=ids).logits
    torch.testing.assert_close(got, want, atol=1e-4, rtol=0)
    # the merged embeddings are the trained ones, not the base's
    fresh = AutoModelForCausalLM.from_pretrained(tiny_llama, dtype=torch.float32).get_input_embeddings().weight
    assert not torch.equal(merged.get_input_embeddings().weight[:old], fresh)
