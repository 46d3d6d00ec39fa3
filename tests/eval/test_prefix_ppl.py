"""The prefix-cached `get_ppl` gives OpenCompass's own numbers (CPU, float32) with far fewer tokens run."""
import json

import numpy as np
import pytest

from firefly_eval.cli import main
from firefly_eval.prefix_ppl import common_prefix_len

SHOTS = "".join(f"以下是关于历史的单项选择题，请直接给出正确答案的选项。\n题目：第{i}个问题是什么？\n"
                f"A. 甲{i}\nB. 乙\nC. 丙\nD. 丁\n答案是: {'ABCD'[i % 4]}\n" for i in range(5))


def prompts(questions, label):
    return [f"{SHOTS}以下是关于历史的单项选择题，请直接给出正确答案的选项。\n题目：{q}\nA. 夏\nB. 商\nC. 秦\nD. 汉\n"
            f"答案是: {label}" for q in questions]


@pytest.fixture(scope="module")
def models(tiny_llama):
    from firefly_eval.opencompass_model import FireflyCausalLM

    return (FireflyCausalLM(str(tiny_llama), prefix_cache=False),
            FireflyCausalLM(str(tiny_llama), prefix_cache=True))


def test_common_prefix_len():
    assert common_prefix_len([[1, 2, 3], [1, 2, 4], [1, 2]]) == 2
    assert common_prefix_len([[5, 1], [6, 1]]) == 0
    assert common_prefix_len([[1, 2, 3]]) == 3


def test_label_passes_equal_opencompass_and_skip_the_model_after_the_first(models):
    plain, cached = models
    questions = ["中国第一个统一的王朝是", "长城始建于哪个朝代", "孔子是哪个时期的人", "丝绸之路开通于"]
    for label in "ABCD":  # OpenCompass's PPL inferencer: one label at a time over all questions
        batches = [questions[:3], questions[3:]]  # the last batch holds a single prompt
        for batch in batches:
            want = plain.get_ppl(prompts(batch, label))
            got = cached.get_ppl(prompts(batch, label))
            np.testing.assert_allclose(got, want, rtol=2e-6)
        if label == "A":
            after_first = cached.prefix_ppl.forward_tokens
    assert cached.prefix_ppl.forward_tokens == after_first  # labels B-D read the stems' cached logits rows
    full = sum(len(r) for r in cached.tokenizer(prompts(questions, "A"))["input_ids"])
    assert after_first < full / 2  # the 5-shot prefix ran once, not once per question


def test_prompts_without_a_shared_prefix_and_mask_length(models):
    plain, cached = models
    texts = ["短的句子。", "另一个完全不同的句子，长一些。", "第三句"]
    np.testing.assert_allclose(cached.get_ppl(texts), plain.get_ppl(texts), rtol=2e-6)
    # a mask_length (OpenCompass's conditional PPL) takes OpenCompass's own path
    np.testing.assert_allclose(cached.get_ppl(texts, mask_length=[1, 2, 1]),
                               plain.get_ppl(texts, mask_length=[1, 2, 1]), rtol=1e-6)


def test_pad_tokens_inside_a_prompt_are_ignored_as_opencompass_does(models):
    plain, cached = models
    pad = plain.tokenizer.pad_token
    texts = [f"{SHOTS}{pad}问题一 答案是: A", f"{SHOTS}{pad}问题二 答案是: {pad}"]
    np.testing.assert_allclose(cached.get_ppl(texts), plain.get_ppl(texts), rtol=2e-6)


@pytest.mark.slow
def test_cmmlu_engines_agree_on_every_prediction(tiny_llama, tmp_path):
    """Both engines through OpenCompass end to end on the mini set: same predictions, PPLs within 1e-5."""
    preds = {}
    for engine in ("opencompass", "firefly"):
        out = tmp_path / f"{engine}.json"
        assert main(["cmmlu", "--ckpt", str(tiny_llama), "--engine", engine, "-o", str(out)]) == 0
        work = next(out.parent.glob(f"{engine}.opencompass/*/predictions/firefly"))
        preds[engine] = {f.name: json.loads(f.read_text()) for f in work.glob("*.json")}
        assert json.loads(out.read_text())["engine"] == engine
    assert preds["firefly"].keys() == preds["opencompass"].keys() and preds["firefly"]
    for name, items in preds["opencompass"].items():
        for key, item in items.items():
            ours = preds["firefly"][name][key]
            assert ours["prediction"] == item["prediction"], (name, key)
            for label in "ABCD":
                assert ours[f"label: {label}"]["PPL"] == pytest.approx(item[f"label: {label}"]["PPL"], rel=1e-5)


def test_scoring_attends_through_the_memory_efficient_kernel_on_cuda(models, monkeypatch):
    """cuDNN's attention plans anew for every shape (each chunk of stems, each padded batch): on CUDA, scoring in
    both engines allows the memory-efficient kernel only; elsewhere it leaves SDPA's choice alone."""
    import torch

    model = models[1]
    seen = []

    def forward(*args, **kwargs):
        seen.append((torch.backends.cuda.cudnn_sdp_enabled(), torch.backends.cuda.mem_efficient_sdp_enabled(),
                     torch.backends.cuda.flash_sdp_enabled(), torch.backends.cuda.math_sdp_enabled()))
        return [1.0] * len(args[0])

    monkeypatch.setattr(model, "prefix_ppl", forward)
    model.get_ppl(["a b c d e f g h i j"])
    assert seen[-1] == (True, True, True, True)
    monkeypatch.setattr(type(model.model), "device", property(lambda self: torch.device("cuda")))
    model.get_ppl(["a b c d e f g h i j"])
    assert seen[-1] == (False, True, False, False)
    assert torch.backends.cuda.cudnn_sdp_enabled() and torch.backends.cuda.math_sdp_enabled()  # restored


def test_the_prefix_cache_holds_views_of_the_prefix_not_copies(models):
    """Every chunk's cache starts from broadcast views of the prefix's keys and values (no copy per row); the
    forward's concatenation is the only copy, and scores are unchanged (the agreement tests above)."""
    scorer = models[1].prefix_ppl
    scorer([list(range(3, 40)) + [50, 51], list(range(3, 40)) + [60, 61, 62]])
    cache = scorer._prefix_cache(5)
    assert len(cache.layers) == len(scorer.prefix_kv) and cache.get_seq_length() == len(scorer.prefix)
    for layer, (k, v) in zip(cache.layers, scorer.prefix_kv):
        assert layer.keys.shape[0] == layer.values.shape[0] == 5 and layer.keys.stride(0) == layer.values.stride(0) == 0
        assert layer.keys.data_ptr() == k.data_ptr() and layer.values.data_ptr() == v.data_ptr()
