"""Each bad input ends with one error line naming file/line/field, exit code 2, and no output folder."""
import json

import pytest
import torch
from transformers import AutoTokenizer

from firefly_train.cli import main


def _run(capsys, command, model, data, out, *extra):
    extra = (["--num_proc", "1"] if command == "pretrain" else []) + list(extra)
    rc = main([command, "--model", str(model), "--data", str(data), "-o", str(out), "--mode", "lora",
               "--max_seq_length", "32", "--micro_batch_size", "1", "--max_steps", "1", *extra])
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if ": error: " in line]
    assert rc == 2 and len(errors) == 1, err
    assert not out.exists()
    return errors[0]


def _write(path, lines):
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def test_malformed_jsonl_line(tiny_llama, tmp_path, capsys):
    data = _write(tmp_path / "corpus.jsonl", ['{"text": "第一行"}', '{"text": "没有结尾'])
    err = _run(capsys, "pretrain", tiny_llama, data, tmp_path / "run")
    assert err.startswith("firefly-train pretrain: error: ") and f"{data}:2: invalid JSON" in err


def test_missing_field(tiny_llama, tmp_path, capsys):
    data = _write(tmp_path / "corpus.jsonl", ['{"text": "好"}', '{"content": "坏"}'])
    assert f"{data}:2: field 'text': missing field" in _run(capsys, "pretrain", tiny_llama, data, tmp_path / "run")


def test_missing_field_in_conversation(tiny_llama, tmp_path, capsys):
    line = {"conversation": [{"human": "你好", "assistant": "你好！"}, {"human": "再见"}]}
    data = _write(tmp_path / "sft.jsonl", [json.dumps(line, ensure_ascii=False)])
    err = _run(capsys, "sft", tiny_llama, data, tmp_path / "run")
    assert f"{data}:1: field 'conversation[1].assistant'" in err


def test_empty_dataset(tiny_llama, tmp_path, capsys):
    data = _write(tmp_path / "sft.jsonl", [])
    assert str(data) in _run(capsys, "sft", tiny_llama, data, tmp_path / "run")


def test_wrong_template_name(tiny_llama, tmp_path, capsys):
    data = _write(tmp_path / "sft.jsonl", ['{"conversation": [{"human": "1+1?", "assistant": "2"}]}'])
    assert "no-such-template" in _run(capsys, "sft", tiny_llama, data, tmp_path / "run", "--template", "no-such-template")


def test_lora_target_matching_no_module(tiny_llama, tmp_path, capsys):
    data = _write(tmp_path / "corpus.jsonl", ['{"text": "' + "数据" * 40 + '"}'])
    err = _run(capsys, "pretrain", tiny_llama, data, tmp_path / "run", "--lora.target_modules", "[q_proj,qkv_proj]")
    assert "LoRA target 'qkv_proj' matches no module" in err and "q_proj" in err


def test_expanded_vocabulary_needs_train_embeddings(tiny_llama, tmp_path, capsys):
    tok = AutoTokenizer.from_pretrained(tiny_llama)
    tok.add_tokens(["人工智能", "机器学习"])
    tok.save_pretrained(tmp_path / "tok")
    data = _write(tmp_path / "corpus.jsonl", ['{"text": "' + "人工智能" * 40 + '"}'])
    err = _run(capsys, "pretrain", tiny_llama, data, tmp_path / "run", "--tokenizer", str(tmp_path / "tok"))
    assert "train_embeddings: true" in err and "49154 tokens" in err


@pytest.mark.parametrize("key,value", [("micro_batch_size", "0"), ("mode", "int4")])
def test_bad_config_value(tiny_llama, tmp_path, capsys, key, value):
    data = _write(tmp_path / "corpus.jsonl", ['{"text": "好"}'])
    assert key in _run(capsys, "pretrain", tiny_llama, data, tmp_path / "run", f"--{key}", value)


def test_unavailable_attention_kernels(tiny_llama, tmp_path, capsys):
    import importlib.util

    if importlib.util.find_spec("flash_attn") is not None:
        pytest.skip("flash-attn is installed here")
    data = _write(tmp_path / "corpus.txt", ["春天来了，田野里开满了花。" * 8])
    err = _run(capsys, "pretrain", tiny_llama, data, tmp_path / "run", "--attn_implementation", "flash_attention_2")
    assert "config key 'attn_implementation': flash_attention_2 is not available here" in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CPU-only check")
def test_deepspeed_on_the_cpu_is_refused_not_silently_dropped(tiny_llama, tmp_path, capsys):
    data = _write(tmp_path / "corpus.txt", ["春天来了，田野里开满了花。" * 8])
    err = _run(capsys, "pretrain", tiny_llama, data, tmp_path / "run", "--deepspeed", "configs/deepspeed/zero2.json")
    assert "deepspeed needs CUDA GPUs" in err
