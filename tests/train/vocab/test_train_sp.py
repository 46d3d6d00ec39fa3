import json
from pathlib import Path

import sentencepiece as spm

from firefly_train.vocab.merge_sp import load_proto
from firefly_train.vocab.train_sp import CHINESE_DEFAULTS, train

SAMPLE = Path(__file__).resolve().parents[3] / "samples" / "vocab_zh.txt"


def test_train_writes_model_vocab_and_info(tmp_path):
    info = train([SAMPLE], 700, tmp_path / "sp")
    files = sorted(p.name for p in (tmp_path / "sp").iterdir())
    assert files == ["chinese_sp.model", "chinese_sp.vocab", "train_info.json"]
    sp = spm.SentencePieceProcessor(model_file=str(tmp_path / "sp" / "chinese_sp.model"))
    assert sp.get_piece_size() == 700 == info["vocab_size"]
    vocab_lines = (tmp_path / "sp" / "chinese_sp.vocab").read_text(encoding="utf-8").splitlines()
    assert len(vocab_lines) == 700 and vocab_lines[0].split("\t")[0] == "<unk>"
    saved = json.loads((tmp_path / "sp" / "train_info.json").read_text(encoding="utf-8"))
    assert saved["model_type"] == "bpe" and saved["lines"] == 30 and saved["options"] == CHINESE_DEFAULTS


def test_identity_normalisation_keeps_full_width_punctuation_and_splits_digits(tmp_path):
    train([SAMPLE], 600, tmp_path / "sp", model_type="unigram")
    sp = spm.SentencePieceProcessor(model_file=str(tmp_path / "sp" / "chinese_sp.model"))
    text = "今天天气很好，我们去公园散步。"
    assert sp.decode(sp.encode(text)) == text and "，" in sp.encode(text, out_type=str)  # NFKC would fold ，
    assert sp.normalize("２０２４，") == "▁２０２４，"  # only the word-start mark is added
    proto = load_proto(tmp_path / "sp" / "chinese_sp.model")
    assert (proto.normalizer_spec.name, proto.trainer_spec.split_digits) == ("identity", True)
    assert not any(sp.is_byte(i) for i in range(sp.get_piece_size()))  # no byte fallback pieces


def test_reads_jsonl_and_csv(tmp_path):
    lines = SAMPLE.read_text(encoding="utf-8").splitlines()
    (tmp_path / "a.jsonl").write_text("\n".join(json.dumps({"text": t}, ensure_ascii=False) for t in lines[:15]),
                                      encoding="utf-8")
    (tmp_path / "b.csv").write_text("id,text\n" + "\n".join(f"{i},{t}" for i, t in enumerate(lines[15:])),
                                    encoding="utf-8")
    info = train([tmp_path / "a.jsonl", tmp_path / "b.csv"], 700, tmp_path / "sp")
    assert info["lines"] == 30 and info["chars"] == sum(len(t) for t in lines)
