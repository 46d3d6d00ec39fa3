"""FireflyLM scores every request as lm-eval's HFLM does (CPU, fp32): log-likelihoods within 1e-4, the same
is_greedy, whatever the grouping, prefix sharing, batching and truncation."""
from pathlib import Path

import pytest

from firefly_eval import leaderboard
from firefly_eval.benchmarks import LEADERBOARD
from firefly_eval.lm_eval_model import (
    MIN_SHARED_PREFIX,
    MIN_SHARING_QUESTIONS,
    FireflyLM,
    _Question,
    cached_templates,
    group_shared_prefixes,
    position_bytes,
)

MINI = Path(__file__).resolve().parents[2] / "firefly_eval" / "minisets" / "english"


@pytest.fixture(scope="module")
def loaded(tiny_llama):
    from firefly_eval import checkpoints

    model, tok, _ = checkpoints.load(str(tiny_llama), device="cpu")
    return model, tok


def _both(loaded, batch_size=8, **kwargs):
    from lm_eval.models.huggingface import HFLM

    model, tok = loaded
    return (HFLM(pretrained=model, tokenizer=tok, batch_size=8),  # (HFLM's 'auto' probes 64 x its window)
            FireflyLM(pretrained=model, tokenizer=tok, batch_size=batch_size, **kwargs))


def _instances(task_dir: Path, limit: int | None, names=None) -> list:
    from lm_eval.tasks import TaskManager, get_task_dict

    manager = TaskManager(include_path=str(task_dir), include_defaults=False)
    flat = []

    def walk(d):
        for v in d.values():
            walk(v) if isinstance(v, dict) else flat.append(v)
    walk(get_task_dict(names or [t.lm_eval_task for t in LEADERBOARD.values()], manager))
    out = []
    for task in flat:
        task.build_all_requests(limit=limit)
        out += task.instances
    return out


def _assert_same(stock, ours):
    assert len(stock) == len(ours)
    assert max(abs(a[0] - b[0]) for a, b in zip(stock, ours)) < 1e-4
    assert [a[1] for a in stock] == [b[1] for b in ours]


def _greedy(model, tokens: list[int], n: int) -> list[int]:
    import torch

    out = model.generate(torch.tensor([tokens]), max_new_tokens=n, min_new_tokens=n, do_sample=False)
    return out[0, len(tokens):].tolist()


@pytest.mark.parametrize("batch_size, max_batch_positions, min_pass_tokens", [("auto", 300, None), (1, 32768, 2048)])
def test_token_requests_greedy_shared_prefix_and_truncation(loaded, batch_size, max_batch_positions, min_pass_tokens):
    """Greedy continuations (is_greedy True, one and several tokens), contexts sharing a long prefix and some
    not, several continuations per context, and requests over the window that HFLM truncates from the left;
    with and without dummy rows filling each pass up to a GPU's floor of token rows."""
    import random

    model, _ = loaded
    rnd = random.Random(0)
    shared = [rnd.randrange(5, 1000) for _ in range(MIN_SHARED_PREFIX + 20)]
    contexts = [shared + [rnd.randrange(5, 1000) for _ in range(rnd.randrange(1, 30))]
                for _ in range(MIN_SHARING_QUESTIONS + 1)]
    contexts += [[rnd.randrange(5, 1000) for _ in range(rnd.randrange(2, 120))] for _ in range(6)]
    assert len(group_shared_prefixes([_Question(tuple(c)) for c in contexts])) == 2  # one shares a prefix
    requests = []
    for ctx in contexts:
        greedy = _greedy(model, ctx, 3)
        conts = [greedy[:1], greedy, [rnd.randrange(5, 1000) for _ in range(rnd.randrange(1, 6))], greedy[:2] + [7]]
        requests += [((None, None), ctx, cont) for cont in conts]
    hf, ff = _both(loaded, batch_size, max_batch_bytes=max_batch_positions * position_bytes(model)[0],
                   min_pass_tokens=min_pass_tokens)
    assert ff.min_pass_tokens == (min_pass_tokens or 0)  # no floor by default on a CPU
    long_ctx = [rnd.randrange(5, 1000) for _ in range(hf.max_length + 3)]
    requests += [((None, None), long_ctx, [11, 12]), ((None, None), long_ctx, [13])]
    rnd.shuffle(requests)
    stock, ours = hf._loglikelihood_tokens(requests, disable_tqdm=True), ff._loglikelihood_tokens(requests, True)
    _assert_same(stock, ours)
    assert sum(g for _, g in stock) >= len(contexts) * 2  # the greedy ones really are


def test_shared_prefix_groups_leave_the_last_context_token():
    common = tuple(range(100, 100 + MIN_SHARED_PREFIX))
    sharing = [_Question(common + (1, 2, i)) for i in range(MIN_SHARING_QUESTIONS - 1)] + [_Question(common + (1,))]
    few = [_Question(common[:10] + (9,) * 80 + (i,)) for i in range(MIN_SHARING_QUESTIONS - 1)]  # too few
    groups = group_shared_prefixes([_Question((5,) * 70), *few, *sharing])
    assert [[q.context for q in g] for g in groups] == [
        [q.context for q in sharing[-1:] + sharing[:-1]], [(5,) * 70] + [q.context for q in few]]
    assert [q.prefix_len for q in groups[0]] == [MIN_SHARED_PREFIX] * MIN_SHARING_QUESTIONS  # common + (1,): its last
    assert {q.prefix_len for q in groups[1]} == {0}


def test_memory_budget_and_what_a_batch_holds(monkeypatch):
    """A 7B (bf16): a cached context position takes 1 MiB (32 layers' keys and values, as cache and pool), a row
    position 32 KiB (one layer's keys, values, query, output); a GPU lends half its free memory, a CPU what
    131,072 cached positions take. On an H200 with 127 GB free, a batch of HellaSwag-like questions (950
    context tokens, four continuations of 2-60 tokens) holds 56 questions."""
    import types

    import torch
    from transformers import LlamaConfig

    from firefly_eval.lm_eval_model import MAX_BATCH_POSITIONS, memory_budget

    cfg = LlamaConfig(hidden_size=4096, num_attention_heads=32, num_key_value_heads=32, num_hidden_layers=32)
    model = types.SimpleNamespace(device=torch.device("cuda"), config=cfg, dtype=torch.bfloat16)
    assert position_bytes(model) == (1024 * 1024, 32 * 1024)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (127e9, 143e9))
    assert memory_budget(model) == int(127e9 * 0.5)
    model.device = torch.device("cpu")
    assert memory_budget(model) == MAX_BATCH_POSITIONS * 1024 * 1024
    lm = types.SimpleNamespace(_position_bytes=position_bytes(model), max_batch_bytes=int(127e9 * 0.5),
                               min_pass_tokens=2048)
    lm._batch_bytes = lambda *a: FireflyLM._batch_bytes(lm, *a)
    lm._ends_batch = lambda *a: FireflyLM._ends_batch(lm, *a)
    requests = [(None, [7] * 950, [5] * (2 + 58 * (k % 4 == 0))) for k in range(4 * 300)]
    group = [_Question(tuple([7] * 950 + [q]), list(range(4 * q, 4 * q + 4))) for q in range(300)]
    sizes = [len(b) for b in FireflyLM._batches(lm, group, requests, None)]
    assert sizes == [56] * 5 + [20]


def test_cheapest_passes_pad_least():
    """Longest first; the cut that computes the fewest token rows (padding, dummy rows up to the floor, and an
    overhead a pass), found among all cuts between distinct lengths."""
    import itertools

    from firefly_eval.lm_eval_model import cheapest_passes

    def cost(passes, lengths, floor, overhead):
        return sum(max(len(p) * lengths[p.start], floor) + overhead for p in passes)

    def brute(lengths, floor, overhead):  # every cut
        n = len(lengths)
        return min(cost([range(a, b) for a, b in zip((0, *cuts), (*cuts, n))], lengths, floor, overhead)
                   for r in range(n) for cuts in itertools.combinations(range(1, n), r))

    for lengths, floor, overhead in [([11, 8, 7, 6, 4, 4, 3, 3, 2], 12, 2), ([11, 8, 7, 6, 4, 4, 3, 3, 2], 0, 0),
                                     ([50, 9, 9, 8, 8, 8, 8, 5, 5, 5, 5, 5], 64, 8), ([7], 100, 1),
                                     ([30, 30, 2, 2, 2, 2, 2, 2], 0, 5)]:
        passes = cheapest_passes(lengths, floor, overhead)
        assert [k for p in passes for k in p] == list(range(len(lengths)))
        assert cost(passes, lengths, floor, overhead) == brute(lengths, floor, overhead)
    assert cheapest_passes([11, 8, 7, 6, 4, 4, 3, 3, 2], 0, 0) == [range(0, 1), range(1, 2), range(2, 3),
                                                                   range(3, 4), range(4, 6), range(6, 8), range(8, 9)]
    assert cheapest_passes([10, 9, 9, 8], 64, 8) == [range(0, 4)]  # under the floor: one pass
    assert cheapest_passes([30, 30, 2, 2, 2, 2, 2, 2], 64, 8) == [range(0, 2), range(2, 8)]  # two, dummy-filled


@pytest.mark.parametrize("adds_bos", [False, True])
def test_requests_are_tokenized_as_hflm_does_in_batches(loaded, tmp_path, monkeypatch, adds_bos):
    """The (context ids, continuation ids) FireflyLM scores are HFLM's for every request of the smoke sets, and
    for a trailing space, a context that starts with the BOS text, an empty context and a repeated context,
    with the tokenizer as it is and one that adds BOS (as Llama's; HFLM then adds none to a string that starts
    with it); none of those strings is encoded alone, and the batch calls (chunks of 16 requests here) see
    TOKENIZERS_PARALLELISM=true."""
    import copy
    import os

    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM
    from tokenizers.processors import TemplateProcessing

    from firefly_eval import lm_eval_model

    model, tok = loaded
    if adds_bos:
        tok = copy.deepcopy(tok)
        tok.backend_tokenizer.post_processor = TemplateProcessing(single=f"{tok.bos_token} $A",
                                                                  special_tokens=[(tok.bos_token, tok.bos_token_id)])
        assert tok.encode("x")[0] == tok.bos_token_id
    hf, ff = _both((model, tok))
    reqs = _instances(leaderboard.render_tasks(MINI, tmp_path / "tasks"), None)
    bos = ff.tokenizer.decode(ff.prefix_token_id)
    extra = [("Question: why? ", "Because."), (bos + "Starts with BOS.", " yes"), ("", "No context at all"),
             ("Question: why? ", "Why not.")]
    reqs += [Instance("loglikelihood", {}, pair, 0) for pair in extra]
    scored = {}
    for lm in (hf, ff):
        monkeypatch.setattr(lm, "_loglikelihood_tokens",
                            lambda r, disable_tqdm=False, lm=lm: scored.setdefault(type(lm), r) and [])
    hf.loglikelihood(reqs, disable_tqdm=True)
    monkeypatch.setattr(lm_eval_model, "ENCODE_CHUNK", 16)
    encoded_alone, batch_env = [], []
    real_encode, real_call = type(ff.tokenizer).encode, type(ff.tokenizer).__call__
    monkeypatch.setattr(type(ff.tokenizer), "encode", lambda self, text, **kw: encoded_alone.append(text)
                        or real_encode(self, text, **kw))
    monkeypatch.setattr(type(ff.tokenizer), "__call__", lambda self, text, **kw: batch_env.append(
        os.environ.get("TOKENIZERS_PARALLELISM")) or real_call(self, text, **kw))
    ff.loglikelihood(reqs, disable_tqdm=True)
    assert scored[FireflyLM] == scored[HFLM] and len(reqs) > 100
    assert encoded_alone == ["No context at all"]  # TemplateLM encodes an empty context's continuation itself
    assert len(batch_env) >= len(reqs) // 16 and set(batch_env) == {"true"}
    assert os.environ.get("TOKENIZERS_PARALLELISM") == "false"  # restored


def test_cached_templates_render_as_lm_eval_and_compile_once(monkeypatch):
    from lm_eval import utils

    doc = {"question": "Why?", "choices": ["a", "b"]}
    template = "{{question.strip()}}\nA. {{choices[0]}}\nB. {{choices[1]}}"
    expected = utils.apply_template(template, doc)
    compiled = []
    real = utils.env.from_string
    monkeypatch.setattr(utils.env, "from_string", lambda t: compiled.append(t) or real(t))
    with cached_templates():
        assert [utils.apply_template(template, doc) for _ in range(3)] == [expected] * 3
    assert compiled == [template]
    utils.apply_template(template, doc)
    assert len(compiled) == 2  # restored afterwards


def _resps(out: dict) -> dict:
    return {(task, s["doc_id"], k): tuple(r[0]) for task, samples in out["samples"].items() for s in samples
            for k, r in enumerate(s["resps"])}


def test_simple_evaluate_requests_and_metrics_equal(loaded, tmp_path):
    """Every request of the four smoke-set tasks (MMLU's share a 5-shot prefix per subject, TruthfulQA's the
    6-QA prompt) scores as with HFLM; the accuracies are identical, mc2 (continuous in the log-likelihoods)
    within 1e-6."""
    model, tok = loaded
    task_dir = leaderboard.render_tasks(MINI, tmp_path / "tasks")
    tasks = list(LEADERBOARD)
    stock = leaderboard.evaluate(model, tok, task_dir, tasks, None, 8, engine="hf", log_samples=True)
    ours = leaderboard.evaluate(model, tok, task_dir, tasks, None, 8, engine="firefly", log_samples=True)
    a, b = _resps(stock), _resps(ours)
    assert a.keys() == b.keys() and len(a) > 100
    _assert_same([a[k] for k in a], [b[k] for k in a])
    stock, ours = stock["results"], ours["results"]
    assert set(stock) == set(ours)
    for task, row in stock.items():
        for key, value in row.items():
            if key.startswith(("acc,", "acc_norm,")) and task != "ff_truthfulqa_mc2":
                assert ours[task][key] == value, (task, key)
    assert ours["ff_truthfulqa_mc2"]["acc,none"] == pytest.approx(stock["ff_truthfulqa_mc2"]["acc,none"], abs=1e-6)


@pytest.mark.slow
@pytest.mark.shared_data
def test_embedded_model_on_shared_data_scores_as_hflm(smollm2, shared_data, tmp_path):
    """The real 135M model and the real sets (ARC 25-shot, HellaSwag 10-shot, MMLU 5-shot, TruthfulQA)."""
    from firefly_eval import checkpoints

    model, tok, _ = checkpoints.load(str(smollm2), device="cpu")
    task_dir = leaderboard.render_tasks(shared_data / "english", tmp_path / "tasks")
    reqs = _instances(task_dir, 2, ["ff_arc_challenge", "ff_hellaswag", "ff_mmlu_anatomy",
                                    "ff_mmlu_high_school_geography", "ff_truthfulqa_mc2"])
    hf, ff = _both((model, tok))
    stock, ours = hf.loglikelihood(reqs, disable_tqdm=True), ff.loglikelihood(reqs, disable_tqdm=True)
    _assert_same(stock, ours)
    assert any(g for _, g in stock)
