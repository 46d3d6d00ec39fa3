"""`firefly-eval bits-per-char`: windows score every token once, the total equals a direct computation, the
result file and its errors."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from firefly_eval.bits_per_char import bits_per_char, windows
from firefly_eval.cli import main


@pytest.mark.parametrize("n, block, stride", [(1, 8, 4), (7, 8, 4), (8, 8, 4), (30, 8, 4), (30, 8, 7), (31, 8, 1),
                                              (100, 16, 5)])
def test_windows_score_every_token_once_with_context(n, block, stride):
    doc = list(range(100, 100 + n))
    wins = windows(doc, start_id=1, block_size=block, stride=stride)
    scored = [t for w in wins for t in w.ids[len(w.ids) - w.scored:]]
    assert scored == doc  # each token once, in order
    assert wins[0].ids[0] == 1  # the first token is predicted from the start token
    for w in wins:
        assert len(w.ids) <= block and 0 < w.scored < len(w.ids)
    for w in wins[1:]:  # a later window keeps at least block - stride tokens of context
        assert len(w.ids) - w.scored >= block - stride


def test_windows_refuse_a_stride_without_context():
    with pytest.raises(ValueError):
        windows([5, 6, 7], 1, block_size=4, stride=4)


def _direct_nll_bits(model, ids: list[int]) -> float:
    """-log2 p of ids[1:] given everything before, from one forward pass over the whole sequence."""
    import torch

    with torch.inference_mode():
        logits = model(input_ids=torch.tensor([ids])).logits[0, :-1].double()
    logp = torch.log_softmax(logits, -1)[torch.arange(len(ids) - 1), torch.tensor(ids[1:])]
    return float(-logp.sum()) / math.log(2)


@pytest.fixture(scope="module")
def model_and_tokenizer(tiny_llama):
    from firefly_eval.checkpoints import load

    model, tok, _ = load(str(tiny_llama), device="cpu")
    return model, tok


DOCS = ["豆腐是用黄豆做成的传统食品。", "放风筝是很多孩子喜欢的户外活动，春天风力适中。", "A short English line, too."]


def test_total_is_the_direct_computation_and_batching_does_not_change_it(model_and_tokenizer):
    model, tok = model_and_tokenizer
    expected = sum(_direct_nll_bits(model, [tok.bos_token_id, *tok.encode(d, add_special_tokens=False)]) for d in DOCS)
    one = bits_per_char(model, tok, DOCS, block_size=512, stride=256, batch_size=1, progress=False)
    many = bits_per_char(model, tok, DOCS, block_size=512, stride=256, batch_size=3, progress=False)
    assert one["nll_bits"] == pytest.approx(expected, rel=1e-6)
    assert many["nll_bits"] == pytest.approx(expected, rel=1e-5)  # padded rows: float noise only
    chars, n_bytes = sum(map(len, DOCS)), sum(len(d.encode()) for d in DOCS)
    tokens = sum(len(tok.encode(d, add_special_tokens=False)) for d in DOCS)
    assert (one["chars"], one["bytes"], one["tokens"], one["windows"]) == (chars, n_bytes, tokens, len(DOCS))
    assert one["bits_per_char"] == pytest.approx(expected / chars)
    assert one["bits_per_byte"] == pytest.approx(expected / n_bytes)
    assert one["tokens_per_char"] == pytest.approx(tokens / chars)
    assert one["context"] == {"start_token": "bos", "block_size": 512, "stride": 256}


def test_sliding_windows_give_each_token_its_window_context(model_and_tokenizer):
    model, tok = model_and_tokenizer
    doc = "".join(DOCS * 3)
    ids = [tok.bos_token_id, *tok.encode(doc, add_special_tokens=False)]
    block, stride = 16, 6
    expected = _direct_nll_bits(model, ids[:block])
    end = block
    while end < len(ids):  # each later stretch of `stride` tokens, predicted from the `block` tokens ending there
        new_end = min(end + stride, len(ids))
        piece = ids[new_end - block:new_end]
        full = _direct_nll_bits(model, piece)
        head = _direct_nll_bits(model, piece[:block - (new_end - end)])
        expected += full - head
        end = new_end
    got = bits_per_char(model, tok, [doc], block_size=block, stride=stride, batch_size=4, progress=False)
    assert got["windows"] > 2 and got["nll_bits"] == pytest.approx(expected, rel=1e-5)


def test_cli_writes_the_result(tiny_llama, tmp_path, capsys):
    text = tmp_path / "heldout.txt"
    text.write_text("\n".join(DOCS) + "\n\n", encoding="utf-8")
    out = tmp_path / "bpc.json"
    assert main(["bits-per-char", "--ckpt", str(tiny_llama), "--text", str(text), "--block-size", "64",
                 "--stride", "32", "-o", str(out)]) == 0
    r = json.loads(out.read_text(encoding="utf-8"))
    assert (r["format"], r["kind"], r["documents"], r["chars"]) == (1, "bits_per_char", 3, sum(map(len, DOCS)))
    assert r["model"]["ckpt"] == str(tiny_llama) and r["text"]["path"] == str(text) and len(r["text"]["sha256"]) == 64
    assert r["bits_per_char"] == pytest.approx(r["nll_bits"] / r["chars"])
    assert r["context"] == {"start_token": "bos", "block_size": 64, "stride": 32}
    assert f"{r['bits_per_char']:.4f} bits/char" in capsys.readouterr().out

    assert main(["bits-per-char", "--ckpt", str(tiny_llama), "--text", str(text), "--max-chars", "5",
                 "-o", str(out)]) == 0
    r = json.loads(out.read_text(encoding="utf-8"))
    assert r["documents"] == 1 and r["chars"] == len(DOCS[0]) and r["text"]["max_chars"] == 5


def test_grown_tokenizer_scores_the_expanded_model_before_training(tiny_llama, tmp_path):
    """--tokenizer: the base model with its embeddings grown as training grows them (pieces init), scored with
    the grown tokenizer: the same as resizing by hand, with fewer tokens per character."""
    from transformers import AutoTokenizer, LlamaForCausalLM

    from firefly_train.vocab.embeddings import resize_and_init
    from firefly_train.vocab.merge_bpe import merge
    from firefly_train.vocab.train_sp import train

    train([Path(__file__).resolve().parents[2] / "samples" / "vocab_zh.txt"], 600, tmp_path / "zh")
    merge(tiny_llama, tmp_path / "zh" / "chinese_sp.model", tmp_path / "tok")
    text = tmp_path / "t.txt"
    text.write_text("\n".join(DOCS), encoding="utf-8")
    for name, extra in (("plain", []), ("grown", ["--tokenizer", str(tmp_path / "tok")])):
        assert main(["bits-per-char", "--ckpt", str(tiny_llama), "--text", str(text), "-o", str(tmp_path / f"{name}.json"),
                     *extra]) == 0
    plain, grown = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("plain", "grown"))
    new_tok = AutoTokenizer.from_pretrained(tmp_path / "tok")
    assert grown["model"]["added_tokens"] == len(new_tok) - 49152 > 0 and grown["model"]["embedding_init"] == "pieces"
    assert grown["tokens_per_char"] < plain["tokens_per_char"]
    model = LlamaForCausalLM.from_pretrained(tiny_llama)
    resize_and_init(model, AutoTokenizer.from_pretrained(tiny_llama), new_tok)
    model.eval()
    expected = bits_per_char(model, new_tok, DOCS, block_size=1024, stride=512, batch_size=1, progress=False)
    assert grown["nll_bits"] == pytest.approx(expected["nll_bits"], rel=1e-5)


@pytest.mark.parametrize("args, message", [
    (["--text", "{tmp}/missing.txt"], "missing.txt: corpus file not found"),
    (["--text", "{tmp}/t.txt", "--block-size", "64", "--stride", "64"], "--stride must be between 1 and --block-size - 1"),
    (["--text", "{tmp}/t.txt", "--block-size", "99999"], "--block-size must be between 2 and the model's context length"),
])
def test_bad_input_is_one_line_exit_2(tiny_llama, tmp_path, capsys, args, message):
    (tmp_path / "t.txt").write_text(DOCS[0], encoding="utf-8")
    argv = ["bits-per-char", "--ckpt", str(tiny_llama), "-o", str(tmp_path / "r.json")]
    assert main(argv + [a.format(tmp=tmp_path) for a in args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and message in err
    assert not (tmp_path / "r.json").exists()


@pytest.mark.shared_data
def test_cnews_sample_scores(tiny_llama, shared_data, tmp_path):
    """The CNews news sample (one `label<TAB>article` a line) read as documents: its first article."""
    out = tmp_path / "cnews.json"
    assert main(["bits-per-char", "--ckpt", str(tiny_llama), "--text", str(shared_data / "corpus" / "cnews.val.subset.txt"),
                 "--max-chars", "1", "--block-size", "512", "--stride", "448", "-o", str(out)]) == 0
    r = json.loads(out.read_text(encoding="utf-8"))
    assert r["documents"] == 1 and r["windows"] > 1  # the first article, longer than one window
    # a random 2-layer model is close to uniform over its vocabulary: about log2(vocab) bits per token
    assert r["bits_per_char"] / r["tokens_per_char"] == pytest.approx(math.log2(49152), rel=0.1)


@pytest.mark.gpu
def test_cuda_bf16_scores_as_cpu_float32(tiny_llama, tmp_path):
    """On a GPU the command runs the model in bf16 on CUDA; the result matches the CPU's float32 one up to bf16
    rounding. Run on a GPU machine with `scripts/test.sh -m gpu` (CI has none)."""
    text = tmp_path / "heldout.txt"
    text.write_text("\n".join(DOCS) + "\n\n", encoding="utf-8")
    results = {}
    for device in ("cpu", "cuda"):
        out = tmp_path / f"{device}.json"
        assert main(["bits-per-char", "--ckpt", str(tiny_llama), "--text", str(text), "--device", device,
                     "-o", str(out)]) == 0
        results[device] = json.loads(out.read_text(encoding="utf-8"))
    assert (results["cpu"]["dtype"], results["cuda"]["dtype"]) == ("float32", "bfloat16")
    assert results["cuda"]["device"] == "cuda"
    assert results["cuda"]["bits_per_char"] == pytest.approx(results["cpu"]["bits_per_char"], rel=0.02)
