"""SFT data: both input formats, errors that name file/line/field, turn-aware truncation and its counts."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from firefly_core.errors import FireflyError, InputError
from firefly_core.templates import IGNORE_INDEX, encode_conversation, get_template
from firefly_train.data.sft import build_sft_dataset, load_conversations, truncate_turns

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
X = IGNORE_INDEX


@pytest.fixture(scope="module")
def tok(smollm2):
    from firefly_core.models import load_tokenizer

    return load_tokenizer(smollm2)


def write_jsonl(path: Path, rows) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n" for r in rows),
                    encoding="utf-8")
    return path


def test_both_formats(tmp_path):
    write_jsonl(tmp_path / "a.jsonl", [
        {"system": "S", "conversation": [{"human": "h1", "assistant": "a1"}, {"human": "h2", "assistant": "a2"}]},
        {"messages": [{"role": "system", "content": "S2"}, {"role": "user", "content": "u"},
                      {"role": "assistant", "content": "v"}]},
        {"messages": [{"role": "user", "content": "u"}, {"role": "assistant", "content": "v"}]},
    ])
    convs = list(load_conversations([str(tmp_path)]))
    assert [(c.system, c.turns, c.line) for c in convs] == [
        ("S", [("h1", "a1"), ("h2", "a2")], 1), ("S2", [("u", "v")], 2), (None, [("u", "v")], 3)]


@pytest.mark.parametrize("row, line_field, message", [
    ('{"conversation": [', (2, None), "invalid JSON"),
    ({"conv": []}, (2, "conversation"), "missing field"),
    ({"conversation": [{"human": "h", "assistant": "a"}, {"assistant": "a"}]}, (2, "conversation[1].human"),
     "missing field"),
    ({"conversation": [{"human": "h", "assistant": 3}]}, (2, "conversation[0].assistant"), "expected str"),
    ({"conversation": []}, (2, "conversation"), "empty conversation"),
    ({"conversation": [{"human": "h", "assistant": " "}]}, (2, "conversation[0].assistant"), "empty assistant"),
    ({"system": 1, "conversation": [{"human": "h", "assistant": "a"}]}, (2, "system"), "expected str"),
    ({"messages": [{"role": "user", "content": "u"}, {"role": "user", "content": "v"}]}, (2, "messages[1].role"),
     "role 'user' out of order"),
    ({"messages": [{"role": "user", "content": "u"}]}, (2, "messages[0]"), "ends with a user message"),
    ({"messages": [{"role": "user"}]}, (2, "messages[0].content"), "missing field"),
])
def test_bad_lines_name_file_line_and_field(tmp_path, row, line_field, message):
    path = write_jsonl(tmp_path / "bad.jsonl", [{"conversation": [{"human": "h", "assistant": "a"}]}, row])
    with pytest.raises(InputError, match=message) as e:
        list(load_conversations([str(path)]))
    line, field = line_field
    assert (e.value.path, e.value.line, e.value.field) == (path, line, field)
    assert str(e.value).startswith(f"{path}:{line}")


def test_truncation_rules():
    ids = list(range(10))
    #          user       reply   user    reply
    labels = [X, X, X, 3, 4, X, X, 7, 8, 9]
    assert truncate_turns(ids, labels, 10) == (ids, labels)
    assert truncate_turns(ids, labels, 9) == (ids[:9], labels[:9])  # cut inside the 2nd reply
    assert truncate_turns(ids, labels, 8) == (ids[:8], labels[:8])  # one reply token of turn 2 remains
    assert truncate_turns(ids, labels, 7) == (ids[:5], labels[:5])  # no dangling user turn: keep turn 1 only
    assert truncate_turns(ids, labels, 6) == (ids[:5], labels[:5])
    assert truncate_turns(ids, labels, 4) == (ids[:4], labels[:4])  # first reply cut, one token left
    assert truncate_turns(ids, labels, 3) == ([], [])  # nothing trainable fits


def test_build_counts_truncated_and_dropped(tmp_path, tok):
    template = get_template("qwen", tok)
    short = [("1+1等于几？", "等于2。")]
    two = [("中国的首都是哪里？", "北京。"), ("请详细介绍一下。" * 40, "北京是中国的首都。")]
    long_system = "你是一个助手。" * 200
    write_jsonl(tmp_path / "d.jsonl", [
        {"conversation": [{"human": h, "assistant": a} for h, a in short]},
        {"conversation": [{"human": h, "assistant": a} for h, a in two]},
        {"system": long_system, "conversation": [{"human": "你好", "assistant": "你好！"}]},
    ])
    max_len = 128
    items, stats = build_sft_dataset([str(tmp_path / "d.jsonl")], tok, template, max_len)
    ids_short, labels_short = encode_conversation(template, tok, None, short)
    ids_first, labels_first = encode_conversation(template, tok, None, two[:1])
    # The 2nd conversation keeps its whole first turn (ending on <|im_end|>, the "\n" separator dropped).
    assert items == [{"input_ids": ids_short, "labels": labels_short},
                     {"input_ids": ids_first[:-1], "labels": labels_first[:-1]}]
    assert tok.decode(items[1]["input_ids"][-1:]) == "<|im_end|>"
    assert {k: v for k, v in stats.items() if k != "files"} == {
        "conversations": 3, "kept": 2, "dropped_no_trainable": 1, "truncated": 1,
        "tokens": len(ids_short) + len(ids_first) - 1,
        "trainable_tokens": sum(x != X for x in labels_short + labels_first)}
    assert stats["files"][0]["path"] == str((tmp_path / "d.jsonl").resolve())
    assert len(stats["files"][0]["sha256"]) == 64
    assert all(len(item["input_ids"]) <= max_len for item in items)


def test_empty_dataset_errors(tmp_path, tok):
    template = get_template("qwen", tok)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n", encoding="utf-8")
    with pytest.raises(InputError, match="no conversations") as e:
        build_sft_dataset([str(empty)], tok, template, 64)
    assert str(empty) in str(e.value)
    write_jsonl(tmp_path / "long.jsonl", [{"conversation": [{"human": "长" * 100, "assistant": "短"}]}])
    with pytest.raises(InputError, match="all 1 conversations were dropped") as e:
        build_sft_dataset([str(tmp_path / "long.jsonl")], tok, template, 16)
    assert "long.jsonl" in str(e.value)
    (tmp_path / "no_jsonl").mkdir()
    with pytest.raises(FireflyError, match="no conversation files"):
        build_sft_dataset([str(tmp_path / "no_jsonl")], tok, template, 64)


def test_bundled_sample_with_smollm2_template(tok):
    items, stats = build_sft_dataset([str(SAMPLES / "sft_zh.jsonl")], tok, get_template("auto", tok), 512)
    assert stats["conversations"] == stats["kept"] == len(items) == 41
    assert stats["dropped_no_trainable"] == stats["truncated"] == 0
    assert 0 < stats["trainable_tokens"] < stats["tokens"]


@pytest.mark.shared_data
def test_firefly_dummy_data(shared_data, tok):
    items, stats = build_sft_dataset([str(shared_data / "firefly" / "sft_dummy.jsonl")], tok,
                                     get_template("firefly", tok), 1024)
    assert stats["conversations"] == 33
    assert stats["kept"] + stats["dropped_no_trainable"] == 33 and len(items) == stats["kept"]
    assert all(len(item["input_ids"]) <= 1024 and any(x != X for x in item["labels"]) for item in items)
