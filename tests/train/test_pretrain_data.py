"""Pretraining data: file discovery, formats, exact packing with EOS between documents, the token cache."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from firefly_core.errors import FireflyError, InputError
from firefly_train.data import pretrain
from firefly_train.data.pretrain import build_pretrain_blocks, find_text_files, read_documents

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
DOCS = ["长江是中国第一长河。", "The Moon orbits the Earth.", "光合作用释放氧气，\n为生物提供食物。", "一二三四五六七八九十"]


@pytest.fixture(scope="module")
def tok(smollm2):
    from firefly_core.models import load_tokenizer

    return load_tokenizer(smollm2)


def write_jsonl(path: Path, docs, field="text") -> Path:
    path.write_text("".join(json.dumps({field: d}, ensure_ascii=False) + "\n" for d in docs), encoding="utf-8")
    return path


def expected_stream(tok, docs) -> list[int]:
    out = []
    for doc in docs:
        out += tok(doc, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    return out


def test_find_text_files(tmp_path):
    (tmp_path / "sub").mkdir()
    for name in ("b.jsonl", "a.txt", "sub/c.csv", "notes.md"):
        (tmp_path / name).write_text("x", encoding="utf-8")
    assert find_text_files([str(tmp_path)]) == [(tmp_path / n).resolve() for n in ("a.txt", "b.jsonl", "sub/c.csv")]
    assert find_text_files([str(tmp_path / "b.jsonl"), str(tmp_path)])[0] == (tmp_path / "b.jsonl").resolve()
    with pytest.raises(InputError, match="unsupported text file type '.md'"):
        find_text_files([str(tmp_path / "notes.md")])
    with pytest.raises(InputError, match="not found"):
        find_text_files([str(tmp_path / "missing.jsonl")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(FireflyError, match="no text files"):
        find_text_files([str(tmp_path / "empty")])


def test_read_documents_formats(tmp_path):
    txt = tmp_path / "a.txt"
    txt.write_text("第一段\n仍是第一段\n\n  \n第二段\n\n\n第三段\n", encoding="utf-8")
    assert read_documents(txt) == ["第一段\n仍是第一段", "第二段", "第三段"]
    csv = tmp_path / "a.csv"
    csv.write_text('id,text\n1,"甲,乙"\n2,\n3,丙\n', encoding="utf-8")
    assert read_documents(csv) == ["甲,乙", "丙"]
    assert read_documents(csv, text_field="body") == ["1", "2", "3"]  # no such column: the first one
    jsonl = write_jsonl(tmp_path / "a.jsonl", ["x", "", "y"], field="content")
    assert read_documents(jsonl, text_field="content") == ["x", "y"]


@pytest.mark.parametrize("seq_len", [4, 7, 16])
def test_packing_is_exact_with_eos_between_documents(tmp_path, tok, seq_len):
    write_jsonl(tmp_path / "a.jsonl", DOCS[:2])
    (tmp_path / "b.txt").write_text("\n\n".join(DOCS[2:]), encoding="utf-8")
    ds, stats = build_pretrain_blocks([str(tmp_path)], tok, seq_len, tmp_path / "cache", num_proc=1)
    stream = expected_stream(tok, DOCS)
    n_blocks = len(stream) // seq_len
    assert len(ds) == stats["blocks"] == n_blocks
    assert stats["tokens"] == n_blocks * seq_len and stats["tail_dropped_tokens"] == len(stream) % seq_len
    assert [(f["documents"], f["tokens"]) for f in stats["files"]] == [
        (2, len(expected_stream(tok, DOCS[:2]))), (2, len(expected_stream(tok, DOCS[2:])))]
    flat = torch.cat([ds[i]["input_ids"] for i in range(len(ds))]).tolist()
    assert flat == stream[: n_blocks * seq_len]
    item = ds[0]
    assert item["input_ids"].dtype == torch.long and item["input_ids"].shape == (seq_len,)
    assert torch.equal(item["labels"], item["input_ids"])


def test_second_call_is_a_cache_hit(tmp_path, tok, monkeypatch):
    path = write_jsonl(tmp_path / "a.jsonl", DOCS)
    cache = tmp_path / "cache"
    ds1, stats1 = build_pretrain_blocks([str(path)], tok, 8, cache, num_proc=1)
    (cache_file,) = cache.glob("*.npz")
    mtime = cache_file.stat().st_mtime_ns
    assert stats1["files"][0]["cached"] is False

    def must_not_tokenize(docs):
        raise AssertionError("tokenizer called on a cache hit")

    monkeypatch.setattr(pretrain, "_tokenize_chunk", must_not_tokenize)
    ds2, stats2 = build_pretrain_blocks([str(path)], tok, 8, cache, num_proc=1)
    assert stats2["files"][0]["cached"] is True and cache_file.stat().st_mtime_ns == mtime
    assert (ds1.blocks == ds2.blocks).all()
    # Changed content is a different key: tokenized again.
    with pytest.raises(AssertionError, match="cache hit"):
        build_pretrain_blocks([str(write_jsonl(path, DOCS + ["新的一段"]))], tok, 8, cache, num_proc=1)


def test_parallel_tokenization_matches_serial(tmp_path, tok, monkeypatch):
    monkeypatch.setattr(pretrain, "CHUNK_DOCS", 3)
    path = write_jsonl(tmp_path / "a.jsonl", DOCS * 5)
    serial, _ = build_pretrain_blocks([str(path)], tok, 8, tmp_path / "c1", num_proc=1)
    parallel, _ = build_pretrain_blocks([str(path)], tok, 8, tmp_path / "c2", num_proc=2)
    assert (serial.blocks == parallel.blocks).all()


@pytest.mark.parametrize("content, line, field, message", [
    ('{"text": "ok"}\n{"text": "broken\n', 2, None, "invalid JSON"),
    ('{"text": "ok"}\n\n{"body": "x"}\n', 3, "text", "missing field"),
    ('{"text": 5}\n', 1, "text", "expected str"),
])
def test_bad_jsonl_names_file_line_field(tmp_path, tok, content, line, field, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(InputError, match=message) as e:
        build_pretrain_blocks([str(path)], tok, 8, tmp_path / "cache", num_proc=1)
    assert (e.value.path, e.value.line, e.value.field) == (path, line, field)
    assert str(e.value).startswith(f"{path}:{line}")


def test_empty_or_too_small_corpus(tmp_path, tok):
    good = write_jsonl(tmp_path / "good.jsonl", DOCS)
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n  \n", encoding="utf-8")
    with pytest.raises(InputError, match="empty corpus file") as e:
        build_pretrain_blocks([str(good), str(empty)], tok, 8, tmp_path / "cache", num_proc=1)
    assert e.value.path == empty.resolve()
    with pytest.raises(InputError, match="fewer than one block of max_seq_length=4096") as e:
        build_pretrain_blocks([str(good)], tok, 4096, tmp_path / "cache", num_proc=1)
    assert "good.jsonl" in str(e.value)


def test_bundled_samples(tmp_path, tok):
    files = [str(SAMPLES / "pretrain_zh.jsonl"), str(SAMPLES / "pretrain_en.txt")]
    ds, stats = build_pretrain_blocks(files, tok, 256, tmp_path / "cache", num_proc=1)
    assert [f["documents"] for f in stats["files"]] == [61, 6]
    assert stats["blocks"] == len(ds) == sum(f["tokens"] for f in stats["files"]) // 256 > 10


@pytest.mark.shared_data
def test_firefly_pretrain_dummy(shared_data, tmp_path, tok):
    ds, stats = build_pretrain_blocks([str(shared_data / "firefly" / "pretrain_dummy_zh.jsonl")], tok, 1024,
                                      tmp_path / "cache", num_proc=1)
    assert stats["files"][0]["documents"] == 50
    assert stats["blocks"] == len(ds) == stats["files"][0]["tokens"] // 1024
