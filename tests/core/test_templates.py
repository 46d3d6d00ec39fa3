"""Chat templates: real formats, and the loss lands exactly on the assistant replies + end-of-turn."""
from __future__ import annotations

import copy

import pytest

from firefly_core.errors import FireflyError
from firefly_core.templates import (
    IGNORE_INDEX,
    TEMPLATES,
    encode_conversation,
    get_template,
    known_names,
    render_conversation,
)

SYSTEM = "你是一个乐于助人的助手。"
TURNS = [("你好，你是谁？", "我是萤火虫助手。"),
         ("12乘以12等于多少？", "12乘以12等于144。"),
         ("把“苹果”翻译成英文。", "Apple.")]


@pytest.fixture(scope="module")
def tok(smollm2):
    from firefly_core.models import load_tokenizer

    return load_tokenizer(smollm2)


def trained_runs(ids, labels):
    runs, cur = [], []
    for i, label in zip(ids, labels):
        if label != IGNORE_INDEX:
            assert label == i
            cur.append(i)
        elif cur:
            runs.append(cur)
            cur = []
    return runs + ([cur] if cur else [])


# What each format trains per turn ({eos} = the tokenizer's EOS; SmolLM2's is <|im_end|>).
TRAINED = {"firefly": "{r}{eos}", "llama2": " {r} {eos}", "qwen": "{r}<|im_end|>", "chatml": "{r}<|im_end|>",
           "baichuan2": "{r}{eos}", "internlm2": "{r}<|im_end|>", "falcon": " {r}{eos}", "auto": "{r}<|im_end|>"}


def test_registry_has_the_required_templates():
    assert set(TRAINED) == set(known_names())
    assert {"llama2", "qwen", "baichuan2", "internlm2", "falcon", "firefly", "chatml"} <= set(TEMPLATES)


@pytest.mark.parametrize("name", sorted(TRAINED))
def test_only_assistant_replies_and_end_of_turn_are_trained(tok, name):
    template = get_template(name, tok)
    ids, labels = encode_conversation(template, tok, SYSTEM, TURNS)
    text, _ = render_conversation(template, tok, SYSTEM, TURNS)
    assert len(ids) == len(labels)
    assert tok.decode(ids) == text  # the ids are the tokenization of the whole rendered text
    runs = trained_runs(ids, labels)
    assert [tok.decode(r) for r in runs] == [TRAINED[name].format(r=reply, eos=tok.eos_token) for _, reply in TURNS]
    assert SYSTEM in text and all(user in text for user, _ in TURNS)


def test_real_formats(tok):
    bos, eos = tok.bos_token, tok.eos_token
    turns = [("hi", "hello"), ("1+1?", "2")]
    expect = {
        "firefly": f"{bos}SYS{eos}hi{eos}hello{eos}1+1?{eos}2{eos}",
        "llama2": f"{bos}[INST] <<SYS>>\nSYS\n<</SYS>>\n\nhi [/INST] hello {eos}{bos}[INST] 1+1? [/INST] 2 {eos}",
        "qwen": "<|im_start|>system\nSYS<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\nhello"
                "<|im_end|>\n<|im_start|>user\n1+1?<|im_end|>\n<|im_start|>assistant\n2<|im_end|>\n",
        "baichuan2": f"SYS<reserved_106>hi<reserved_107>hello{eos}<reserved_106>1+1?<reserved_107>2{eos}",
        "falcon": f"System: SYS\nUser: hi\nFalcon: hello{eos}\nUser: 1+1?\nFalcon: 2{eos}\n",
    }
    for name, text in expect.items():
        assert render_conversation(get_template(name, tok), tok, "SYS", turns)[0] == text, name
    assert render_conversation(get_template("internlm2", tok), tok, "SYS", turns)[0] == bos + expect["qwen"]


def test_default_system_prompts(tok):
    text, _ = render_conversation(get_template("qwen", tok), tok, None, [("hi", "hello")])
    assert text.startswith("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nhi")
    text, _ = render_conversation(get_template("internlm2", tok), tok, None, [("hi", "hello")])
    assert "You are an AI assistant whose name is InternLM (书生·浦语)." in text
    text, _ = render_conversation(get_template("chatml", tok), tok, None, [("hi", "hello")])
    assert text.startswith("<|im_start|>user\nhi")
    text, _ = render_conversation(get_template("llama2", tok), tok, None, [("hi", "hello")])
    assert text == f"{tok.bos_token}[INST] hi [/INST] hello {tok.eos_token}"


@pytest.mark.parametrize("system", [None, SYSTEM])
def test_auto_is_exactly_the_tokenizers_chat_template(tok, system):
    template = get_template("auto", tok)
    messages = ([{"role": "system", "content": system}] if system else [])
    for user, reply in TURNS:
        messages += [{"role": "user", "content": user}, {"role": "assistant", "content": reply}]
    ids, labels = encode_conversation(template, tok, system, TURNS)
    assert ids == list(tok.apply_chat_template(messages, tokenize=True)["input_ids"])
    assert [tok.decode(r) for r in trained_runs(ids, labels)] == [f"{r}<|im_end|>" for _, r in TURNS]
    n_untrained = sum(label == IGNORE_INDEX for label in labels)
    n_trained = sum(len(tok(f"{r}<|im_end|>", add_special_tokens=False)["input_ids"]) for _, r in TURNS)
    assert n_untrained == len(ids) - n_trained


def test_generation_prompt_matches_training_prefix(tok):
    turns = [("你好", "你好！"), ("1+1等于几？", None)]
    text, spans = render_conversation(get_template("qwen", tok), tok, None, turns)
    assert text.endswith("<|im_start|>user\n1+1等于几？<|im_end|>\n<|im_start|>assistant\n") and len(spans) == 1
    auto = get_template("auto", tok)
    ids, labels = encode_conversation(auto, tok, None, turns)
    messages = [{"role": "user", "content": "你好"}, {"role": "assistant", "content": "你好！"},
                {"role": "user", "content": "1+1等于几？"}]
    assert ids == list(tok.apply_chat_template(messages, add_generation_prompt=True)["input_ids"])


def test_auto_without_chat_template_falls_back_to_firefly(tok):
    plain = copy.deepcopy(tok)
    plain.chat_template = None
    assert get_template("auto", plain).name == "firefly"


def test_unknown_template_lists_known_names(tok):
    with pytest.raises(FireflyError, match="unknown chat template 'vicuna'") as e:
        get_template("vicuna", tok)
    for name in ("llama2", "qwen", "baichuan2", "internlm2", "falcon", "firefly", "chatml", "auto"):
        assert name in str(e.value)


def test_slow_tokenizer_encodes_piece_by_piece(tok):
    class Slow:  # a tokenizer without character offsets
        is_fast = False
        bos_token, eos_token = tok.bos_token, tok.eos_token

        def encode(self, text, add_special_tokens=False):
            return tok.encode(text, add_special_tokens=add_special_tokens)

    template = get_template("qwen", tok)
    assert encode_conversation(template, Slow(), SYSTEM, TURNS) == encode_conversation(template, tok, SYSTEM, TURNS)


def test_auto_template_that_rejects_a_conversation_is_a_firefly_error(tok):
    strict = copy.deepcopy(tok)
    strict.chat_template = "{% if messages[0]['role'] == 'system' %}{{ raise_exception('no system role') }}{% endif %}"
    with pytest.raises(FireflyError, match="no system role"):
        encode_conversation(get_template("auto", strict), strict, SYSTEM, TURNS)


@pytest.mark.shared_data
@pytest.mark.parametrize("folder", ["llama2", "merged"])
def test_llama2_template_equals_metas_reference_encoding(shared_data, folder, tmp_path):
    """Meta's chat_completion: per turn, BOS + sp.encode("[INST] {user} [/INST] {answer} ") + EOS, the system
    prompt inside the first [INST] between <<SYS>> markers; the loss on " {answer} " + EOS only. For Llama 2's
    tokenizer and for `vocab merge`'s output (Llama 2 + the Chinese SentencePiece model)."""
    import sentencepiece as spm

    from firefly_core.models import load_tokenizer
    from firefly_train.vocab.merge_sp import merge

    path = shared_data / "tokenizers" / "llama2"
    if folder == "merged":
        merge(path, shared_data / "tokenizers" / "chinese-sp" / "chinese_sp.model", tmp_path / "merged")
        path = tmp_path / "merged"
    tok, sp = load_tokenizer(path), spm.SentencePieceProcessor(model_file=str(path / "tokenizer.model"))
    ids, labels = encode_conversation(get_template("llama2", tok), tok, SYSTEM, TURNS)
    want, trained = [], []
    for k, (user, reply) in enumerate(TURNS):
        user = f"<<SYS>>\n{SYSTEM}\n<</SYS>>\n\n{user}" if k == 0 else user
        prompt = sp.encode(f"[INST] {user} [/INST]")
        turn = [sp.bos_id()] + sp.encode(f"[INST] {user} [/INST] {reply} ") + [sp.eos_id()]
        assert turn[1:len(prompt) + 1] == prompt  # the prompt's pieces do not merge across into the reply
        want += turn
        trained.append(turn[len(prompt) + 1:])
    assert ids == want
    assert trained_runs(ids, labels) == trained
