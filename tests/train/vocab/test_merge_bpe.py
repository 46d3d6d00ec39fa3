import glob
import json
from pathlib import Path

import pytest
from transformers import AutoTokenizer

from firefly_train.cli import main
from firefly_train.vocab.merge_bpe import bpe, merge
from firefly_train.vocab.train_sp import train

REPO = Path(__file__).resolve().parents[3]
SAMPLE = REPO / "samples" / "vocab_zh.txt"


def english_and_code() -> list[str]:
    """This project's Python sources and docs and transformers' Llama modules, one text a file, keeping
    the ASCII lines (a non-ASCII symbol such as an arrow or a dash can itself be one of the new pieces)."""
    import transformers

    files = sorted(glob.glob(str(REPO / "firefly_train" / "**" / "*.py"), recursive=True))
    files += sorted(glob.glob(str(Path(transformers.__file__).parent / "models" / "llama" / "*.py")))
    files += [str(REPO / "README.md"), str(REPO / "docs" / "CONTRACTS.md")]
    texts = [Path(f).read_text(encoding="utf-8").splitlines() for f in files]
    return ["\n".join(line for line in lines if line.isascii()) for lines in texts]


@pytest.fixture(scope="module")
def expanded(smollm2, tmp_path_factory):
    out = tmp_path_factory.mktemp("bpe")
    train([SAMPLE], 600, out / "zh")
    info = merge(smollm2, out / "zh" / "chinese_sp.model", out / "tok")
    return out, info


def test_base_ids_and_merges_unchanged(smollm2, expanded):
    out, info = expanded
    base = json.loads((smollm2 / "tokenizer.json").read_text(encoding="utf-8"))["model"]
    new = json.loads((out / "tok" / "tokenizer.json").read_text(encoding="utf-8"))["model"]
    assert all(new["vocab"][t] == i for t, i in base["vocab"].items())
    assert new["merges"][:len(base["merges"])] == base["merges"]
    assert len(new["vocab"]) == info["vocab_size"] == 49152 + info["added_pieces"] + info["added_intermediates"]
    assert len(new["merges"]) - len(base["merges"]) == info["new_merges"]
    assert info["pieces_single_token"] == info["candidates"] - info["skipped_not_one_word"] - info[
        "skipped_base_intermediate"]
    assert len(AutoTokenizer.from_pretrained(out / "tok")) == info["vocab_size"]


def test_english_and_code_tokenize_exactly_as_before(smollm2, expanded):
    out, _ = expanded
    a, b = AutoTokenizer.from_pretrained(smollm2), AutoTokenizer.from_pretrained(out / "tok")
    texts = english_and_code()
    assert sum(map(len, texts)) > 100_000
    assert a(texts)["input_ids"] == b(texts)["input_ids"]


def test_mixed_text_keeps_english_tokens_and_shortens_chinese(smollm2, expanded):
    out, _ = expanded
    a, b = AutoTokenizer.from_pretrained(smollm2), AutoTokenizer.from_pretrained(out / "tok")
    mixed = "The new model 人工智能 runs on the GPU.\ndef area(b, h):  # 三角形的面积\n    return b * h / 2"
    old, new = a.tokenize(mixed), b.tokenize(mixed)
    assert b.decode(b.encode(mixed)) == mixed
    ascii_old = [t for t in old if all(ord(c) < 0x80 or c in "ĠĊ" for c in t)]
    ascii_new = [t for t in new if all(ord(c) < 0x80 or c in "ĠĊ" for c in t)]
    assert ascii_new == ascii_old  # every English/code token is the same, in the same order
    assert (len(old), len(new)) == (46, 36)
    text = SAMPLE.read_text(encoding="utf-8")
    assert (len(a.encode(text)), len(b.encode(text))) == (2684, 1341)


def test_bpe_matches_hf_on_base_merges(smollm2):
    spec = json.loads((smollm2 / "tokenizer.json").read_text(encoding="utf-8"))
    ranks = {tuple(m): i for i, m in enumerate(spec["model"]["merges"])}
    tok = AutoTokenizer.from_pretrained(smollm2)
    for word in ["Ġtokenization", "Ġinternationalization", "ä¸ŃåĽ½äºº", "Ġ12345"]:
        assert bpe(word, ranks) == [t.value for t in tok.backend_tokenizer.model.tokenize(word)]


def test_cli_pads_to_multiple(expanded, tmp_path, capsys):
    out, _ = expanded
    assert main(["vocab", "merge", "--base", "smollm2-135m", "--add", str(out / "zh" / "chinese_sp.model"),
                 "-o", str(tmp_path / "p"), "--pad-to-multiple-of", "64"]) == 0
    tok = AutoTokenizer.from_pretrained(tmp_path / "p")
    assert len(tok) % 64 == 0
    assert "new merges" in capsys.readouterr().out


@pytest.mark.shared_data
def test_cnews_vocab_on_smollm2(shared_data, smollm2, tmp_path):
    news = (shared_data / "corpus" / "cnews.val.subset.txt").read_text(encoding="utf-8").splitlines()
    (tmp_path / "train.txt").write_text("\n".join(news[:800]), encoding="utf-8")
    train([tmp_path / "train.txt"], 20000, tmp_path / "sp")
    info = merge(smollm2, tmp_path / "sp" / "chinese_sp.model", tmp_path / "tok")
    a, b = AutoTokenizer.from_pretrained(smollm2), AutoTokenizer.from_pretrained(tmp_path / "tok")
    held = news[800:]
    na, nb = (sum(map(len, t(held)["input_ids"])) for t in (a, b))
    assert 1 - nb / na > 0.6, (na, nb, info)  # measured: see docs/vocab.md
    texts = english_and_code()
    assert a(texts)["input_ids"] == b(texts)["input_ids"]
