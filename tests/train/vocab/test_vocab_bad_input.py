import pytest

from firefly_train.cli import main


def _run(capsys, argv):
    rc = main(argv)
    err = capsys.readouterr().err.strip()
    return rc, err


@pytest.mark.parametrize("content, message", [(b"", "empty corpus"), (b"\n  \n", "empty corpus"),
                                               (b"ok\n\xff\xfe\n", "not UTF-8")])
def test_bad_corpus_train_and_stats(tmp_path, capsys, content, message):
    (tmp_path / "c.txt").write_bytes(content)
    rc, err = _run(capsys, ["vocab", "train", "--corpus", str(tmp_path / "c.txt"), "--vocab-size", "100",
                            "-o", str(tmp_path / "out")])
    assert rc == 2 and message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "out").exists() and [p.name for p in tmp_path.iterdir()] == ["c.txt"]
    rc, err = _run(capsys, ["vocab", "stats", "--tokenizer", "smollm2-135m", "--corpus", str(tmp_path / "c.txt"),
                            "--json", str(tmp_path / "s.json")])
    assert rc == 2 and message in err and not (tmp_path / "s.json").exists()


def test_bad_jsonl_names_line_and_field(tmp_path, capsys):
    (tmp_path / "c.jsonl").write_text('{"text": "好"}\n{"content": "x"}\n', encoding="utf-8")
    rc, err = _run(capsys, ["vocab", "train", "--corpus", str(tmp_path / "c.jsonl"), "--vocab-size", "100",
                            "-o", str(tmp_path / "out")])
    assert rc == 2 and "c.jsonl:2: field 'text'" in err


def test_unsupported_tokenizer_kinds(tmp_path, capsys):
    from tokenizers import Tokenizer
    from tokenizers.models import WordPiece

    wp = tmp_path / "wordpiece"
    wp.mkdir()
    Tokenizer(WordPiece({"[UNK]": 0, "a": 1}, unk_token="[UNK]")).save(str(wp / "tokenizer.json"))
    (tmp_path / "zh.model").write_bytes(b"not a model")
    rc, err = _run(capsys, ["vocab", "merge", "--base", str(wp), "--add", str(tmp_path / "zh.model"),
                            "-o", str(tmp_path / "out")])
    assert rc == 2 and "unsupported base tokenizer" in err
    rc, err = _run(capsys, ["vocab", "merge", "--base", "smollm2-135m", "--add", str(tmp_path / "zh.model"),
                            "-o", str(tmp_path / "out")])
    assert rc == 2 and "is not a SentencePiece model" in err
    (tmp_path / "c.txt").write_text("你好\n", encoding="utf-8")
    rc, err = _run(capsys, ["vocab", "stats", "--tokenizer", str(tmp_path / "c.txt"), "--corpus",
                            str(tmp_path / "c.txt")])
    assert rc == 2 and "unsupported tokenizer" in err
    assert not (tmp_path / "out").exists()


def test_vocab_size_too_large_is_one_line(tmp_path, capsys):
    (tmp_path / "c.txt").write_text("你好世界\n今天天气很好\n", encoding="utf-8")
    rc, err = _run(capsys, ["vocab", "train", "--corpus", str(tmp_path / "c.txt"), "--vocab-size", "5000",
                            "-o", str(tmp_path / "out")])
    assert rc == 2 and "SentencePiece training failed" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "out").exists()
