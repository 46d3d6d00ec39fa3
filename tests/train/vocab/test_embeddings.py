import json
import shutil
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

from firefly_core.errors import FireflyError
from firefly_train.vocab.embeddings import resize_and_init
from firefly_train.vocab.merge_bpe import merge
from firefly_train.vocab.train_sp import train

SAMPLE = Path(__file__).resolve().parents[3] / "samples" / "vocab_zh.txt"
CHINESE = "人工智能是计算机科学的一个重要分支，它研究如何让机器像人一样思考、学习和解决问题。"


@pytest.fixture(scope="module")
def zh_tokenizer(smollm2, tmp_path_factory):
    out = tmp_path_factory.mktemp("emb")
    train([SAMPLE], 600, out / "zh")
    merge(smollm2, out / "zh" / "chinese_sp.model", out / "tok")
    return out / "tok"


def test_pieces_init_is_mean_of_old_pieces_and_old_rows_unchanged(tiny_llama, zh_tokenizer):
    old_tok, new_tok = AutoTokenizer.from_pretrained(tiny_llama), AutoTokenizer.from_pretrained(zh_tokenizer)
    model = LlamaForCausalLM.from_pretrained(tiny_llama)
    before = model.get_input_embeddings().weight.detach().clone()
    n = resize_and_init(model, old_tok, new_tok)
    assert n == len(new_tok) - 49152 > 0
    w = model.get_input_embeddings().weight
    assert w.shape[0] == len(new_tok) and model.get_output_embeddings().weight is w  # still tied
    assert torch.equal(w[:49152], before)
    words = {i: new_tok.decode([i]) for i in range(49152, len(new_tok))}
    checked = 0
    for i, word in words.items():
        if len(word) >= 2 and "\ufffd" not in word:  # a whole multi-character piece (not a byte fragment)
            pieces = old_tok.encode(word, add_special_tokens=False)
            assert new_tok.encode(word, add_special_tokens=False) == [i] and len(pieces) > 1
            assert torch.allclose(w[i], before[pieces].mean(0))
            checked += 1
    assert checked > 50


def test_untied_lm_head_and_mean_and_random(zh_tokenizer, smollm2):
    old_tok, new_tok = AutoTokenizer.from_pretrained(smollm2), AutoTokenizer.from_pretrained(zh_tokenizer)
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=49152, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=1, tie_word_embeddings=False,
                      initializer_range=0.5)
    model = LlamaForCausalLM(cfg)
    head = model.get_output_embeddings().weight.detach().clone()
    resize_and_init(model, old_tok, new_tok, method="mean")
    assert torch.allclose(model.get_output_embeddings().weight[-1], head.mean(0))
    assert torch.equal(model.get_output_embeddings().weight[:49152], head)
    model = LlamaForCausalLM(cfg)
    resize_and_init(model, old_tok, new_tok, method="random")
    new_rows = model.get_input_embeddings().weight[49152:]
    assert new_rows.std().item() == pytest.approx(0.5, rel=0.05)


def test_errors_for_padded_model_and_moved_ids(tiny_llama, zh_tokenizer, tmp_path):
    old_tok, new_tok = AutoTokenizer.from_pretrained(tiny_llama), AutoTokenizer.from_pretrained(zh_tokenizer)
    model = LlamaForCausalLM.from_pretrained(tiny_llama)
    model.resize_token_embeddings(len(new_tok) + 64)  # a padded embedding larger than the grown tokenizer
    with pytest.raises(FireflyError, match="more than the grown tokenizer"):
        resize_and_init(model, old_tok, new_tok)
    assert resize_and_init(model, old_tok, old_tok) == 0  # padding without growth is fine
    spec = json.loads((zh_tokenizer / "tokenizer.json").read_text(encoding="utf-8"))
    vocab = spec["model"]["vocab"]
    vocab["the"], vocab["Ġthe"] = vocab["Ġthe"], vocab["the"]  # a grown tokenizer that moved two base ids
    shutil.copytree(zh_tokenizer, tmp_path / "moved")
    (tmp_path / "moved" / "tokenizer.json").write_text(json.dumps(spec), encoding="utf-8")
    with pytest.raises(FireflyError, match="does not keep the old ids"):
        resize_and_init(LlamaForCausalLM.from_pretrained(tiny_llama), old_tok,
                        AutoTokenizer.from_pretrained(tmp_path / "moved"))
    with pytest.raises(FireflyError, match="method"):
        resize_and_init(model, old_tok, new_tok, method="zeros")


def _loss(model, tok, text):
    ids = tok(text, return_tensors="pt").input_ids
    with torch.no_grad():
        return model(ids, labels=ids).loss.item()


def test_smollm2_pieces_init_beats_random_and_english_answer_unchanged(smollm2, zh_tokenizer):
    old_tok, new_tok = AutoTokenizer.from_pretrained(smollm2), AutoTokenizer.from_pretrained(zh_tokenizer)
    prompt = old_tok.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                         tokenize=False, add_generation_prompt=True)
    model = AutoModelForCausalLM.from_pretrained(smollm2, dtype=torch.float32).eval()
    ids = old_tok(prompt, return_tensors="pt").input_ids
    assert new_tok(prompt, return_tensors="pt").input_ids.tolist() == ids.tolist()
    before = model.generate(ids, max_new_tokens=20, do_sample=False)
    resize_and_init(model, old_tok, new_tok, method="pieces")
    after = model.generate(ids, max_new_tokens=20, do_sample=False)
    assert after.tolist() == before.tolist()
    assert "Paris" in old_tok.decode(after[0, ids.shape[1]:])
    pieces_loss = _loss(model, new_tok, CHINESE)
    torch.manual_seed(0)
    random_model = AutoModelForCausalLM.from_pretrained(smollm2, dtype=torch.float32).eval()
    resize_and_init(random_model, old_tok, new_tok, method="random")
    random_loss = _loss(random_model, new_tok, CHINESE)
    assert pieces_loss < random_loss - 1.0, (pieces_loss, random_loss)
