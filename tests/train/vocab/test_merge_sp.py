import glob
import json
from pathlib import Path

import pytest
import sentencepiece as spm
from transformers import AutoTokenizer

from firefly_train.cli import main
from firefly_train.vocab import merge_sp
from firefly_train.vocab.stats import measure
from firefly_train.vocab.train_sp import train

REPO = Path(__file__).resolve().parents[3]
SAMPLE = REPO / "samples" / "vocab_zh.txt"


def english_lines() -> list[str]:
    """English prose and Python code: this project's sources and transformers' Llama modules."""
    files = sorted(glob.glob(str(REPO / "firefly_train" / "**" / "*.py"), recursive=True))
    import transformers.models.llama as llama
    files += sorted(glob.glob(str(Path(llama.__file__).parent / "*.py")))
    lines = [line for f in files for line in Path(f).read_text(encoding="utf-8").splitlines()]
    return [line for line in lines if line.strip() and line.isascii()]


@pytest.fixture(scope="module")
def small_base(tmp_path_factory):
    """A small English SentencePiece BPE base with byte fallback, like Llama's."""
    out = tmp_path_factory.mktemp("base")
    (out / "en.txt").write_text("\n".join(english_lines()), encoding="utf-8")
    spm.SentencePieceTrainer.train(input=str(out / "en.txt"), model_prefix=str(out / "tokenizer"), vocab_size=600,
                                   model_type="bpe", byte_fallback=True, split_digits=True, minloglevel=2,
                                   normalization_rule_name="identity", remove_extra_whitespaces=False)
    train([SAMPLE], 700, out / "zh")
    return out


def test_merge_keeps_base_ids_and_english(small_base, tmp_path):
    info = merge_sp.merge(small_base / "tokenizer.model", small_base / "zh" / "chinese_sp.model", tmp_path / "m")
    base = spm.SentencePieceProcessor(model_file=str(small_base / "tokenizer.model"))
    merged = spm.SentencePieceProcessor(model_file=str(tmp_path / "m" / "tokenizer.model"))
    assert merged.get_piece_size() == info["merged_pieces"] == 600 + info["appended"]
    assert [merged.id_to_piece(i) for i in range(600)] == [base.id_to_piece(i) for i in range(600)]
    english = english_lines()
    assert merged.encode(english) == base.encode(english)
    text = SAMPLE.read_text(encoding="utf-8")
    assert len(merged.encode(text)) < 0.5 * len(base.encode(text))
    hf = AutoTokenizer.from_pretrained(str(tmp_path / "m"))
    assert len(hf) == info["merged_pieces"]
    for line in text.splitlines() + english[:300]:
        assert hf.encode(line.lstrip(), add_special_tokens=False) == merged.encode(line.lstrip())
    assert json.loads((tmp_path / "m" / "merge_info.json").read_text())["kind"] == "vocab_merge"


def test_cli_pads_with_never_emitted_pieces(small_base, tmp_path, capsys):
    assert main(["vocab", "merge", "--base", str(small_base / "tokenizer.model"), "--add",
                 str(small_base / "zh" / "chinese_sp.model"), "-o", str(tmp_path / "m"),
                 "--pad-to-multiple-of", "64"]) == 0
    merged = spm.SentencePieceProcessor(model_file=str(tmp_path / "m" / "tokenizer.model"))
    assert merged.get_piece_size() % 64 == 0
    pads = {i for i in range(merged.get_piece_size()) if merged.id_to_piece(i).startswith("<pad_")}
    assert pads and all(merged.is_control(i) for i in pads)
    assert not pads & {i for ids in merged.encode(english_lines()[:200]) for i in ids}
    assert "pieces ->" in capsys.readouterr().out


@pytest.mark.shared_data
def test_chinese_llama_merge_reproduced(shared_data, tmp_path):
    tk = shared_data / "tokenizers"
    info = merge_sp.merge(tk / "llama2", tk / "chinese-sp" / "chinese_sp.model", tmp_path / "m")
    assert info["merged_pieces"] == 49953
    assert (info["appended"], info["appended_reserved_ascii"]) == (17953, 648)
    llama = spm.SentencePieceProcessor(model_file=str(tk / "llama2" / "tokenizer.model"))
    merged = spm.SentencePieceProcessor(model_file=str(tmp_path / "m" / "tokenizer.model"))
    assert [merged.id_to_piece(i) for i in range(32000)] == [llama.id_to_piece(i) for i in range(32000)]
    english = english_lines()
    arc = shared_data / "english" / "arc_challenge" / "ARC-Challenge-Test.jsonl"
    stems = [json.loads(line)["question"]["stem"] for line in arc.read_text(encoding="utf-8").splitlines()]
    english += [s for s in stems if s.isascii()]  # "110°F" contains the new piece "0°": not ASCII text
    assert len(english) > 3000 and merged.encode(english) == llama.encode(english)
    news = [line for line in (shared_data / "corpus" / "cnews.val.subset.txt").read_text(encoding="utf-8").splitlines()]
    hf = AutoTokenizer.from_pretrained(str(tmp_path / "m"))
    sample = news[:100] + [e.lstrip() for e in english[:2000]]
    assert hf(sample, add_special_tokens=False, split_special_tokens=True)["input_ids"] == merged.encode(sample)


@pytest.mark.shared_data
def test_own_train_and_merge_beats_chinese_llama2_on_held_out(shared_data, tmp_path):
    news = (shared_data / "corpus" / "cnews.val.subset.txt").read_text(encoding="utf-8").splitlines()
    (tmp_path / "train.txt").write_text("\n".join(news[:800]), encoding="utf-8")
    (tmp_path / "held.txt").write_text("\n".join(news[800:]), encoding="utf-8")
    tk = shared_data / "tokenizers"
    train([tmp_path / "train.txt"], 20000, tmp_path / "sp")
    merge_sp.merge(tk / "llama2" / "tokenizer.model", tmp_path / "sp" / "chinese_sp.model", tmp_path / "m")
    r = measure([str(tk / "llama2" / "tokenizer.model"), str(tk / "chinese-llama2" / "tokenizer.model"),
                 str(tmp_path / "m")], [tmp_path / "held.txt"])
    red = r["total"]["reduction_vs_first"]
    assert red["m"] >= red["chinese-llama2"]  # measured 0.5662 vs 0.5448
    llama = spm.SentencePieceProcessor(model_file=str(tk / "llama2" / "tokenizer.model"))
    merged = spm.SentencePieceProcessor(model_file=str(tmp_path / "m" / "tokenizer.model"))
    assert merged.encode(english_lines()) == llama.encode(english_lines())
