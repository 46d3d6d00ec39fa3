import json

import pytest
from transformers import AutoTokenizer

from firefly_train.cli import main
from firefly_train.vocab.stats import format_table, measure

TEXTS = ["Hello world, this is English.", "人工智能正在改变我们的生活。", "def f(x):\n    return x"]


def test_measure_counts_per_file_and_total(tmp_path, smollm2, tiny_llama):
    (tmp_path / "a.txt").write_text(TEXTS[0] + "\n\n" + TEXTS[1] + "\n", encoding="utf-8")
    (tmp_path / "b.jsonl").write_text(json.dumps({"text": TEXTS[2]}) + "\n", encoding="utf-8")
    tok = AutoTokenizer.from_pretrained(smollm2)
    n = [len(tok.encode(t, add_special_tokens=False)) for t in TEXTS]
    r = measure([str(smollm2), str(tiny_llama)], [tmp_path / "a.txt", tmp_path / "b.jsonl"])
    names = [t["name"] for t in r["tokenizers"]]
    assert names == ["smollm2-135m", tiny_llama.name]
    assert r["tokenizers"][0]["vocab_size"] == 49152
    assert [f["chars"] for f in r["files"]] == [len(TEXTS[0]) + len(TEXTS[1]), len(TEXTS[2])]
    assert r["files"][0]["tokens"][names[0]] == n[0] + n[1] and r["files"][1]["tokens"][names[0]] == n[2]
    assert r["total"]["tokens"] == {names[0]: sum(n), names[1]: sum(n)}  # same tokenizer, two folders
    assert r["total"]["tokens_per_char"][names[0]] == sum(n) / sum(map(len, TEXTS))
    assert r["total"]["reduction_vs_first"] == {names[0]: 0.0, names[1]: 0.0}
    assert "TOTAL" in format_table(r)


def test_cli_writes_contract_json(tmp_path, smollm2, capsys):
    (tmp_path / "c.txt").write_text("\n".join(TEXTS), encoding="utf-8")
    assert main(["vocab", "stats", "--tokenizer", "smollm2-135m", "--corpus", str(tmp_path / "c.txt"),
                 "--json", str(tmp_path / "s.json")]) == 0
    r = json.loads((tmp_path / "s.json").read_text(encoding="utf-8"))
    assert set(r) == {"format", "kind", "tokenizers", "files", "total"}
    assert (r["format"], r["kind"]) == (1, "vocab_stats")
    assert set(r["total"]) == {"chars", "tokens", "tokens_per_char", "reduction_vs_first"}
    assert set(r["tokenizers"][0]) == {"name", "path", "vocab_size"}
    assert "smollm2-135m" in capsys.readouterr().out


@pytest.mark.shared_data
def test_llama2_vs_chinese_llama2_on_cnews(shared_data):
    tk = shared_data / "tokenizers"
    r = measure([str(tk / "llama2" / "tokenizer.model"), str(tk / "chinese-llama2" / "tokenizer.model")],
                [shared_data / "corpus" / "cnews.val.subset.txt"])
    assert r["total"]["chars"] == 1016405  # 1000 lines "label\ttext"
    assert r["total"]["tokens"] == {"llama2": 1465111, "chinese-llama2": 666334}
    assert r["total"]["tokens_per_char"]["llama2"] == pytest.approx(1.441, abs=1e-3)
    assert r["total"]["reduction_vs_first"]["chinese-llama2"] == pytest.approx(0.545, abs=0.005)
