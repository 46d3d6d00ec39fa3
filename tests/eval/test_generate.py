import importlib.machinery
import json
import sys
import types
from pathlib import Path

import pytest

from firefly_core.errors import FireflyError
from firefly_eval.answers import load_answers
from firefly_eval.cli import main
from firefly_eval.eval_set import load_set
from firefly_eval.generate import (
    BatchedGenerator,
    auto_batch_size,
    default_model_name,
    item_seed,
    parse_batch_size,
    plan_batches,
    render_prompt,
)

TINY = Path(__file__).parent / "fixtures" / "tiny_set.jsonl"


def lines(path):
    return [json.loads(x) for x in Path(path).read_text(encoding="utf-8").splitlines()]


def gen(tiny_llama, out, *extra, set_path=TINY):
    return main(["generate", "--ckpt", str(tiny_llama), "--set", str(set_path), "-o", str(out),
                 "--max-new-tokens", "6", "--model-name", "tiny", *extra])


def test_item_seed_depends_on_base_and_id_only():
    assert item_seed(42, "math-01") == item_seed(42, "math-01")
    assert len({item_seed(42, f"x-{i}") for i in range(100)} | {item_seed(43, "x-0")}) == 101
    assert 0 <= item_seed(7, "a") < 2**31


def test_default_model_name(tmp_path):
    assert default_model_name("smollm2-135m") == "smollm2-135m"
    (tmp_path / "run1" / "checkpoints" / "step-000050").mkdir(parents=True)
    (tmp_path / "run1" / "final").mkdir()
    assert default_model_name(str(tmp_path / "run1")) == "run1"
    assert default_model_name(str(tmp_path / "run1" / "final")) == "run1-final"
    assert default_model_name(str(tmp_path / "run1" / "checkpoints" / "step-000050")) == "run1-step-000050"


def test_generate_resume_and_torn_line(tiny_llama, tmp_path):
    out = tmp_path / "answers.jsonl"
    assert gen(tiny_llama, out, "--limit", "3", "--batch-size", "2") == 0
    first = lines(out)
    header = first[0]
    assert header["kind"] == "answers_header" and header["model"] == "tiny"
    assert header["set_hash"] == load_set(TINY).hash and header["seed"] == 42
    assert header["sampling"] == {"greedy": False, "temperature": 0.35, "top_p": 0.9, "max_new_tokens": 6,
                                  "template": "auto", "system": None}
    assert sorted(r["id"] for r in first[1:]) == ["classification-01", "math-01", "math-02"]
    for r in first[1:]:
        assert r["seed"] == item_seed(42, r["id"]) and 1 <= r["tokens"] <= 6 and isinstance(r["answer"], str)
    # a kill mid-write leaves a torn last line: resuming cuts it away and answers the rest, once each
    with open(out, "a", encoding="utf-8") as f:
        f.write('{"id": "classification-02", "ans')
    assert gen(tiny_llama, out, "--batch-size", "2") == 0
    second = lines(out)
    assert second[:4] == first  # answered items untouched
    assert sorted(r["id"] for r in second[1:]) == sorted(load_set(TINY).by_id)
    answers = load_answers(out, load_set(TINY))
    assert answers.model == "tiny" and len(answers.by_id) == 6
    # nothing left: a rerun appends nothing
    assert gen(tiny_llama, out) == 0
    assert lines(out) == second


def test_resume_refuses_other_set_or_settings(tiny_llama, tmp_path, capsys):
    out = tmp_path / "answers.jsonl"
    assert gen(tiny_llama, out, "--limit", "1") == 0
    other = tmp_path / "other.jsonl"
    objs = lines(TINY)
    objs[0]["prompt"] = "另一个问题"
    other.write_text("".join(json.dumps(o, ensure_ascii=False) + "\n" for o in objs), encoding="utf-8")
    before = out.read_bytes()
    assert gen(tiny_llama, out, set_path=other) == 2
    assert "answers a different evaluation set" in capsys.readouterr().err
    assert gen(tiny_llama, out, "--temperature", "0.7") == 2
    assert "was made with sampling=" in capsys.readouterr().err
    assert out.read_bytes() == before  # nothing lost


def test_cli_answers_do_not_depend_on_batch(tiny_llama, tmp_path):
    one, three = tmp_path / "one.jsonl", tmp_path / "three.jsonl"
    assert gen(tiny_llama, one, "--limit", "3", "--batch-size", "1") == 0
    assert gen(tiny_llama, three, "--limit", "3", "--batch-size", "3") == 0
    by_id = lambda p: {r["id"]: (r["answer"], r["tokens"]) for r in lines(p)[1:]}  # noqa: E731
    assert by_id(one) == by_id(three)
    other_seed = tmp_path / "seed.jsonl"
    assert gen(tiny_llama, other_seed, "--limit", "3", "--seed", "7") == 0
    assert by_id(other_seed) != by_id(one)


def test_greedy_and_named_template(tiny_llama, tmp_path):
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    assert gen(tiny_llama, a, "--limit", "2", "--greedy", "--template", "chatml") == 0
    assert gen(tiny_llama, b, "--limit", "2", "--greedy", "--template", "chatml", "--seed", "1") == 0
    assert [r["answer"] for r in lines(a)[1:]] == [r["answer"] for r in lines(b)[1:]]
    assert lines(a)[0]["sampling"]["greedy"] is True and lines(a)[0]["sampling"]["temperature"] is None


def test_bad_flags(tiny_llama, tmp_path, capsys):
    assert gen(tiny_llama, tmp_path / "x.jsonl", "--top-p", "0") == 2
    assert "sampling needs" in capsys.readouterr().err


def test_embedded_model_answers_the_set(tmp_path):
    out = tmp_path / "smol.jsonl"
    assert main(["generate", "--ckpt", "smollm2-135m", "--set", str(TINY), "-o", str(out),
                 "--max-new-tokens", "48", "--batch-size", "6"]) == 0
    answers = load_answers(out, load_set(TINY))
    assert answers.model == "smollm2-135m" and all(answers.by_id.values())
    assert all(1 <= r["tokens"] <= 48 for r in lines(out)[1:])


def test_lora_checkpoint_run_folder(tiny_llama, tmp_path):
    """A firefly-train run folder (LoRA adapter in final/) answers through checkpoints.load."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    final = tmp_path / "run7" / "final"
    torch.manual_seed(0)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_llama), LoraConfig(r=4, target_modules=["q_proj"]))
    model.save_pretrained(final)
    tok = AutoTokenizer.from_pretrained(tiny_llama)
    tok.save_pretrained(final)
    (final / "firefly_checkpoint.json").write_text(json.dumps(
        {"format": 1, "base_model": str(tiny_llama), "mode": "lora", "vocab_size": len(tok), "step": 1,
         "train_embeddings": False}), encoding="utf-8")
    out = tmp_path / "lora.jsonl"
    assert main(["generate", "--ckpt", str(tmp_path / "run7"), "--set", str(TINY), "-o", str(out),
                 "--max-new-tokens", "4", "--limit", "2"]) == 0
    header, *rows = lines(out)
    assert header["model"] == "run7" and header["ckpt"] == str(tmp_path / "run7") and len(rows) == 2


def test_batch_size_flag_and_plan():
    assert parse_batch_size("auto") is None and parse_batch_size("64") == 64
    for bad in ("0", "-3", "many"):
        with pytest.raises(FireflyError, match="--batch-size"):
            parse_batch_size(bad)
    # near-equal batches, never larger than asked: 130 at 64 -> 3 of 44/43/43, not 64/64/2
    assert [len(b) for b in plan_batches(130, 64)] == [44, 44, 42]
    assert [len(b) for b in plan_batches(130, 130)] == [130] and [len(b) for b in plan_batches(3, 1)] == [1, 1, 1]
    assert [i for b in plan_batches(17, 8) for i in b] == list(range(17))


@pytest.fixture(scope="module")
def tiny_model(tiny_llama):
    """The tiny Llama, float32 on the CPU, with its tokenizer and the tiny set's prompts (chatml)."""
    from firefly_core.templates import get_template
    from firefly_eval.checkpoints import load

    model, tok, _ = load(str(tiny_llama), device="cpu")
    template = get_template("chatml", tok)
    texts = [render_prompt(template, tok, it.prompt, None) for it in load_set(TINY).items]
    return model, tok, texts


def token_rows(tiny_model, texts, seeds, batch_size, max_new_tokens=10, compile_step=False):
    model, tok, _ = tiny_model
    gen = BatchedGenerator(model, tok, texts, max_new_tokens, [tok.eos_token_id], batch_size, compile_step)
    return dict(gen.token_rows(seeds)), gen


def test_sampled_tokens_do_not_depend_on_batch_size_or_company(tiny_model):
    """An item's tokens are the same alone, in two batches of 3 (`--batch-size 4`, the second filled up), all 6
    together, and in another company (a subset, in another order)."""
    texts = tiny_model[2]
    seeds = [item_seed(42, it.id) for it in load_set(TINY).items]
    alone, _ = token_rows(tiny_model, texts, seeds, 1, max_new_tokens=6)
    assert all(len(row) == 6 for row in alone.values())  # a random model hardly ever stops early
    for size in (4, 6):
        assert token_rows(tiny_model, texts, seeds, size, max_new_tokens=6)[0] == alone
    subset = [4, 1, 2]
    other, _ = token_rows(tiny_model, [texts[i] for i in subset], [seeds[i] for i in subset], 3, max_new_tokens=6)
    assert {subset[k]: row for k, row in other.items()} == {i: alone[i] for i in subset}
    other_seeds, _ = token_rows(tiny_model, texts, [s + 1 for s in seeds], 6, max_new_tokens=6)
    assert all(other_seeds[i] != alone[i] for i in alone)


def test_auto_batch_size_fits_the_kv_cache(monkeypatch):
    """A 7B (Llama-2 shape, 55,296 pieces, bf16) with 125 GiB free takes all 130 prompts of up to 768 positions
    at once (about 0.5 GB each); with 20 GiB free, as many as fit in 80% of it. 8 on a CPU."""
    import torch
    from transformers import LlamaConfig

    cfg = LlamaConfig(vocab_size=55296, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                      num_attention_heads=32, num_key_value_heads=32)
    lm_head = types.SimpleNamespace(weight=torch.empty(55296, 0))
    model = types.SimpleNamespace(config=cfg, dtype=torch.bfloat16, device=torch.device("cuda"),
                                  get_output_embeddings=lambda: lm_head)
    gib = 2**30
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (125 * gib, 139 * gib))
    assert auto_batch_size(model, 130, 768) == 130
    per_row = 32 * 2 * 32 * 128 * 768 * 2 + 768 * (11008 * 3 + 4096 * 8) * 2 + 55296 * 48
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (20 * gib, 139 * gib))
    assert auto_batch_size(model, 130, 768) == int(20 * gib * 0.8) // per_row == 33
    assert auto_batch_size(types.SimpleNamespace(device=torch.device("cpu")), 130, 768) == 8


def test_greedy_equals_plain_generate(tiny_model):
    import torch

    model, tok, texts = tiny_model
    tok.padding_side = "left"
    enc = tok(texts, add_special_tokens=False, padding=True, return_tensors="pt")
    with torch.no_grad():
        plain = model.generate(**enc, do_sample=False, max_new_tokens=12, eos_token_id=[tok.eos_token_id],
                               pad_token_id=tok.pad_token_id, temperature=None, top_p=None, top_k=None)
    expected = {i: row for i, row in enumerate(plain[:, enc["input_ids"].shape[1]:].tolist())}
    for size in (2, 6):
        assert token_rows(tiny_model, texts, None, size, max_new_tokens=12)[0] == expected


def test_compiled_step_is_one_graph_and_matches_eager(tiny_model, monkeypatch):
    """The decoding step compiles as one graph (no graph break, no recompilation across steps and batches) and
    gives the eager tokens. On the CPU the compiler backend is aot_eager (dynamo and AOT autograd, no C++ build); on
    a GPU it is inductor with CUDA graphs."""
    import torch

    texts = tiny_model[2]
    seeds = list(range(6))
    eager, _ = token_rows(tiny_model, texts, seeds, 3, max_new_tokens=6)
    seen = {}
    real_compile = torch.compile

    def compile_with_aot_eager(fn, **kwargs):
        seen.update(kwargs)
        return real_compile(fn, backend="aot_eager", fullgraph=True, dynamic=kwargs["dynamic"])  # breaks would raise

    monkeypatch.setattr(torch, "compile", compile_with_aot_eager)
    torch._dynamo.reset()
    with torch._dynamo.config.patch(error_on_recompile=True):  # (monkeypatch's undo leaves dynamo's config broken)
        compiled, gen = token_rows(tiny_model, texts, seeds, 3, max_new_tokens=6, compile_step=True)
    assert seen == {"mode": "reduce-overhead", "fullgraph": False, "dynamic": False}
    assert gen.decoder.path == "static cache, compiled step (CUDA graphs)" and len(gen.batches) == 2
    assert compiled == eager
    torch._dynamo.reset()


@pytest.mark.slow  # ~80 s on 2 cores: inductor builds C++ kernels
def test_inductor_compile_on_cpu_matches_eager(tiny_model):
    """The real compile (inductor, mode reduce-overhead) on the CPU: the eager tokens, and the path says that
    CUDA graphs were skipped (there are none on a CPU)."""
    import torch

    texts = tiny_model[2][:4]
    eager, _ = token_rows(tiny_model, texts, [5, 6, 7, 8], 2, max_new_tokens=5)
    torch._dynamo.reset()
    compiled, gen = token_rows(tiny_model, texts, [5, 6, 7, 8], 2, max_new_tokens=5, compile_step=True)
    torch._dynamo.reset()
    assert compiled == eager
    assert gen.decoder.path == "static cache, compiled step (CUDA graphs skipped: see the inductor log)"


def test_decoder_attends_with_the_deterministic_kernels_only(tiny_model, monkeypatch):
    """While decoding, the model attends through `STEP_ATTENTION`: the prefill with SDPA restricted to
    `attention_backends` (on CUDA `PREFILL_ATTENTION`: cuDNN's masked kernel does not repeat itself on an H200; the
    CPU model is given that setting here, every SDPA call sees cuDNN and flash disabled), every decoding step
    with matrix products and no SDPA call. The tokens are those of SDPA throughout (float32), and the model's own
    attention is restored afterwards."""
    import torch

    from firefly_eval import generate, step_attention

    model, tok, texts = tiny_model
    texts = texts[:3]
    gen = BatchedGenerator(model, tok, texts, 5, [tok.eos_token_id], 3, compile_step=False)
    assert gen.decoder.attention_backends is None  # a CPU model: SDPA's own choice
    gen.decoder.matmul_steps = False
    sdpa_only = dict(gen.token_rows([1, 2, 3]))
    seen, steps = [], []
    real_sdpa = torch.nn.functional.scaled_dot_product_attention
    real_step = step_attention.step_attention

    def recording_sdpa(*args, **kwargs):
        seen.append((torch.backends.cuda.cudnn_sdp_enabled(), torch.backends.cuda.flash_sdp_enabled(),
                     torch.backends.cuda.mem_efficient_sdp_enabled()))
        return real_sdpa(*args, **kwargs)

    def recording_step(module, query, *args, **kwargs):
        steps.append(query.shape[2])
        return real_step(module, query, *args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", recording_sdpa)
    monkeypatch.setattr(step_attention, "step_attention", recording_step)
    gen = BatchedGenerator(model, tok, texts, 5, [tok.eos_token_id], 3, compile_step=False)
    gen.decoder.attention_backends = generate.PREFILL_ATTENTION
    assert dict(gen.token_rows([1, 2, 3])) == sdpa_only
    layers = model.config.num_hidden_layers
    assert len(seen) == layers  # the prefill only
    assert set(seen) == {(False, False, True)}
    assert sorted(set(steps)) == [1, max(steps)] and steps.count(1) == 4 * layers  # four steps
    assert torch.backends.cuda.cudnn_sdp_enabled()  # restored after decoding
    assert model.config._attn_implementation == "sdpa"


def test_model_that_cannot_switch_decodes_with_its_own_attention(tiny_model, monkeypatch, caplog):
    """A model whose attention `set_attn_implementation` cannot change (remote code: transformers warns and leaves
    it) is found out once, when the decoder is built, and decodes on its own attention."""
    model, tok, texts = tiny_model
    texts = texts[:3]
    own, gen = token_rows(tiny_model, texts, [1, 2, 3], 3, max_new_tokens=5)
    assert gen.decoder.matmul_steps
    monkeypatch.setattr(model, "set_attn_implementation", lambda name: None, raising=False)
    with caplog.at_level("WARNING", logger="firefly_eval.generate"):
        unswitched, gen = token_rows(tiny_model, texts, [1, 2, 3], 3, max_new_tokens=5)
    assert not gen.decoder.matmul_steps
    assert [r.message for r in caplog.records] == [
        "LlamaForCausalLM cannot be switched to matrix-product decoding steps; it decodes with its own attention"]
    assert unswitched == own  # float32: the same tokens either way
    assert model.config._attn_implementation == "sdpa"


def test_step_attention_is_sdpa_for_one_query(tiny_model):
    """The matrix-product step gives SDPA's attention output for one query a row over a padded cache, with
    grouped-query heads (the tiny model has 4 query heads on 2 key/value heads), with and without a mask."""
    import torch
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    from firefly_eval.step_attention import step_attention

    model = tiny_model[0]
    module = model.model.layers[0].self_attn
    torch.manual_seed(0)
    query, key, value = torch.randn(3, 4, 1, 16), torch.randn(3, 2, 9, 16), torch.randn(3, 2, 9, 16)
    mask = torch.ones(3, 1, 1, 9, dtype=torch.bool)
    mask[0, ..., :4] = False
    mask[2, ..., 7:] = False
    for m in (mask, None):
        ours, _ = step_attention(module, query, key, value, m, scaling=0.25)
        ref, _ = sdpa_attention_forward(module, query, key, value, m, scaling=0.25)
        assert ours.shape == ref.shape == (3, 1, 4, 16)
        torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-6)


def test_failed_compile_falls_back_to_eager(tiny_model, monkeypatch):
    import torch

    texts = tiny_model[2][:3]
    eager, _ = token_rows(tiny_model, texts, [1, 2, 3], 3, max_new_tokens=5)

    def broken_compile(fn, **kwargs):
        def step(*args):
            raise RuntimeError("no CUDA graphs here")
        return step

    monkeypatch.setattr(torch, "compile", broken_compile)
    fallen_back, gen = token_rows(tiny_model, texts, [1, 2, 3], 3, max_new_tokens=5, compile_step=True)
    assert fallen_back == eager
    assert gen.decoder.path == "static cache, eager (compiled step failed: RuntimeError)"


def test_sampler_draws_from_the_filtered_softmax():
    """Gumbel-max on the hashed noise is an exact draw: 20,000 rows (seeds) of the same logits land on each token
    about as often as softmax(logits / temperature) says; top-p removes the tail exactly as transformers' warpers."""
    import torch
    from transformers import TemperatureLogitsWarper, TopPLogitsWarper

    from firefly_eval.sampling import ItemSampler, gumbel_noise

    logits = torch.tensor([2.0, 1.5, 1.0, 0.0, -1.0, -3.0])
    n = 20_000
    sampler = ItemSampler(list(range(n)), 6, temperature=0.7, top_p=1.0, device="cpu")
    counts = torch.bincount(sampler(logits.expand(n, 6), step=3), minlength=6).double() / n
    expected = torch.softmax(logits.double() / 0.7, dim=-1)
    assert torch.allclose(counts, expected, atol=4 * (expected * (1 - expected) / n).sqrt().max())
    # the same row of noise whatever the other rows, and another step gives other noise
    noise = gumbel_noise(sampler.row_keys, 3, sampler.token_keys)
    assert torch.equal(gumbel_noise(sampler.row_keys[5:6], 3, sampler.token_keys), noise[5:6])
    assert not torch.equal(gumbel_noise(sampler.row_keys[:1], 3, sampler.token_keys),
                           gumbel_noise(sampler.row_keys[:1], 4, sampler.token_keys))
    batch = torch.randn(4, 50) * 3
    top_p = ItemSampler([0] * 4, 50, temperature=0.35, top_p=0.9, device="cpu")
    theirs = TopPLogitsWarper(0.9)(None, TemperatureLogitsWarper(0.35)(None, batch.clone()))
    assert torch.equal(top_p.filtered_logits(batch), theirs)
    kept = torch.isfinite(theirs)
    assert all(kept[r, t] for step in range(20) for r, t in enumerate(top_p(batch, step).tolist()))


def fake_vllm(calls, stop):
    """A stand-in `vllm` module: records the LLM and SamplingParams it gets; answers 3 tokens, then `stop`."""
    module = types.ModuleType("vllm")
    module.__spec__ = importlib.machinery.ModuleSpec("vllm", None)

    class SamplingParams:
        def __init__(self, **kwargs):
            self.kwargs = kwargs

    class LLM:
        def __init__(self, **kwargs):
            calls["llm"] = kwargs

        def generate(self, texts, params):
            calls["texts"], calls["params"] = texts, [p.kwargs for p in params]
            return [types.SimpleNamespace(outputs=[types.SimpleNamespace(text=f" 回答{k} ", token_ids=[11, 12, 13, stop])])
                    for k in range(len(texts))]

    module.LLM, module.SamplingParams = LLM, SamplingParams
    return module


def test_vllm_adapter_contract(tiny_llama, tmp_path, monkeypatch):
    """vLLM cannot be installed here (its wheel pins another torch): its adapter runs against a stand-in module
    and must ask for per-item seeds and the run's sampling, and write the transformers engine's lines."""
    from transformers import AutoTokenizer

    eos = AutoTokenizer.from_pretrained(tiny_llama).eos_token_id
    calls = {}
    monkeypatch.setitem(sys.modules, "vllm", fake_vllm(calls, eos))
    out_vllm, out_hf = tmp_path / "vllm.jsonl", tmp_path / "hf.jsonl"
    assert gen(tiny_llama, out_vllm, "--limit", "3", "--engine", "vllm", "--device", "cuda") == 0
    assert gen(tiny_llama, out_hf, "--limit", "3", "--engine", "transformers") == 0
    ids = [it.id for it in load_set(TINY).items[:3]]
    assert calls["llm"]["model"] == str(tiny_llama) and calls["llm"]["seed"] == 42
    assert [p["seed"] for p in calls["params"]] == [item_seed(42, i) for i in ids]
    for p in calls["params"]:
        assert (p["temperature"], p["top_p"], p["max_tokens"]) == (0.35, 0.9, 6) and eos in p["stop_token_ids"]
    assert all(t.endswith("<|im_start|>assistant\n") for t in calls["texts"])  # the tokenizer's chat template
    (head_v, *rows_v), (head_h, *rows_h) = lines(out_vllm), lines(out_hf)
    assert head_v == head_h
    assert [r["id"] for r in rows_v] == ids and sorted(r["id"] for r in rows_h) == sorted(ids)
    assert all(set(r) == {"id", "answer", "seed", "tokens"} for r in rows_v + rows_h)
    assert [(r["answer"], r["seed"], r["tokens"]) for r in rows_v] == [
        (f"回答{k}", item_seed(42, i), 3) for k, i in enumerate(ids)]


def test_top_p_cut_between_tied_scores_follows_token_order():
    """bf16 logits tie often: the cut falls by token index (a stable sort), the same in every row position, so a
    GPU's unstable sort cannot make an item's kept tokens depend on its row."""
    import torch

    from firefly_eval.sampling import ItemSampler

    tied = torch.tensor([1.0, 1.0, 1.0, 1.0, -9.0])
    batch = torch.stack([torch.randn(5), tied, torch.randn(5), tied])
    kept = torch.isfinite(ItemSampler([0] * 4, 5, temperature=1.0, top_p=0.5, device="cpu").filtered_logits(batch))
    assert kept[1].tolist() == kept[3].tolist() == [False, True, True, True, False]


def _step_repeats_and_matches_sdpa(device, rows, heads, keys, dim, dtype, tolerance):
    import torch
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    from firefly_eval.step_attention import step_attention

    g = torch.Generator(device).manual_seed(0)
    q = torch.randn(rows, heads, 1, dim, device=device, dtype=dtype, generator=g)
    k, v = (torch.randn(rows, heads, keys, dim, device=device, dtype=dtype, generator=g) for _ in range(2))
    pads = torch.randint(0, keys // 2, (rows,), device=device, generator=g)
    mask = (torch.arange(keys, device=device) >= pads[:, None])[:, None, None, :]
    module = types.SimpleNamespace(num_key_value_groups=1, is_causal=True, training=False)
    first, _ = step_attention(module, q, k, v, mask)
    again, _ = step_attention(module, q, k, v, mask)
    assert torch.equal(first, again)
    compiled = torch.compile(step_attention)
    assert torch.equal(compiled(module, q, k, v, mask)[0], compiled(module, q, k, v, mask)[0])
    with sdpa_kernel([SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]):
        ref, _ = sdpa_attention_forward(module, q, k, v, mask)
    torch.testing.assert_close(first.float(), ref.float(), rtol=tolerance, atol=tolerance)


def test_step_repeats_itself_eager_and_compiled():
    """The GPU test's checks at a small shape on the CPU (float32)."""
    import torch

    _step_repeats_and_matches_sdpa("cpu", 6, 4, 40, 16, torch.float32, 1e-5)


@pytest.mark.gpu
def test_on_cuda_the_step_repeats_itself_and_matches_sdpa():
    """On a GPU in bf16 at a 7B's decoding shape (130 rows, 32 heads, a 736-position cache, left padding): the
    matrix-product step gives the same bits when run again, eager and compiled, and SDPA's memory-efficient result
    within bf16 rounding (its scores are rounded to bf16, as in transformers' eager attention)."""
    import torch

    _step_repeats_and_matches_sdpa("cuda", 130, 32, 736, 128, torch.bfloat16, 2e-2)
