"""Which computation reproduces lm-eval's stock `HFLM` log-probabilities bit for bit (bf16, one GPU)?

Stock HFLM scores each (context, continuation) request as its own row, `context + continuation[:-1]`, rows
right-padded into a batch, one `model(inputs).logits` call without an attention mask (SDPA's causal kernel),
then a log-softmax in the model's dtype over every position. The eighth session measured that it is
batch-invariant (its own log-likelihoods at batch 16 and at 'auto' are identical) while `FireflyLM` (packed
continuations under a 4-D mask) differs by up to 2.0 in bf16. This script takes random requests (the model is
random-init anyway) and compares, per continuation token, stock's log-probability with:

- stock's own layout at another batch size, and under each SDPA backend forced (which kernel stock runs);
- stock's rows with the output layer on the scored positions only;
- stock's rows with the causal rule given as an additive mask, cuDNN forced (a masked kernel's rounding);
- `FireflyLM` (sums only), whose scoring is `firefly_eval.cached_rows`: contexts right-padded in one batch
  (stock's own call), then every continuation as a row over its context's cached keys/values with stock's
  attention call; all questions in one pass, one question per pass without and with the GPU's floor of token
  rows per pass (`min_pass_tokens`), and as it runs by default; for MMLU's layout, question rows over the
  cached few-shot prefix, 16 a pass or all in one.

The eighth session's call 3 (`bench/results/h200-2026-12-03-s8/call3_*`) found stock = cuDNN's causal kernel and
continuations over the cached context through flash attention (lower-right causal bias, or varlen) not bitwise
equal; the ninth session's call 1, not with an additive mask either (`cached_rows`' first form).

    python bench/lm_eval_exactness.py --model-dir /tmp/l7 [--json out.json]
"""
from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def random_questions(n: int, vocab: int, ctx: tuple[int, int], cont: tuple[int, int], choices: int,
                     prefix: list[int] | None, seed: int) -> list[tuple[list[int], list[list[int]]]]:
    g = torch.Generator().manual_seed(seed)

    def ids(k):
        return torch.randint(3, vocab, (k,), generator=g).tolist()

    def length(lo, hi):
        return int(torch.randint(lo, hi + 1, (1,), generator=g))

    return [((prefix or []) + ids(length(*ctx)), [ids(length(*cont)) for _ in range(choices)]) for _ in range(n)]


def requests_of(questions) -> list[tuple[list[int], list[int]]]:
    return [(c, x) for c, conts in questions for x in conts]


@torch.no_grad()
def stock(model, reqs, batch: int) -> list[torch.Tensor]:
    """HFLM's `_loglikelihood_tokens` for causal models: per request its continuation tokens' log-probs (bf16)."""
    order = sorted(range(len(reqs)), key=lambda i: -(len(reqs[i][0]) + len(reqs[i][1])))
    out: list[torch.Tensor | None] = [None] * len(reqs)
    for s in range(0, len(order), batch):
        chunk = order[s:s + batch]
        inps = [torch.tensor((reqs[i][0] + reqs[i][1])[:-1]) for i in chunk]
        width = max(len(x) for x in inps)
        batched = torch.stack([F.pad(x, (0, width - len(x))) for x in inps]).to(model.device)
        logp = F.log_softmax(model(batched).logits, dim=-1)
        for i, row, inp in zip(chunk, logp, inps):
            cont = torch.tensor(reqs[i][1], device=model.device)
            picked = row[len(inp) - len(cont):len(inp)]
            out[i] = picked.gather(1, cont[:, None]).squeeze(1).float().cpu()
    return out


@torch.no_grad()
def stock_head_on_scored(model, reqs, batch: int) -> list[torch.Tensor]:
    """Stock's rows and kernel, the output layer and log-softmax on the scored positions only."""
    decoder, head = model.get_decoder(), model.get_output_embeddings()
    out: list[torch.Tensor | None] = [None] * len(reqs)
    for s in range(0, len(reqs), batch):
        chunk = range(s, min(s + batch, len(reqs)))
        inps = [torch.tensor((reqs[i][0] + reqs[i][1])[:-1]) for i in chunk]
        width = max(len(x) for x in inps)
        hidden = decoder(input_ids=torch.stack([F.pad(x, (0, width - len(x))) for x in inps]).to(model.device)
                         ).last_hidden_state
        for i, row, inp in zip(chunk, hidden, inps):
            cont = torch.tensor(reqs[i][1], device=model.device)
            logp = F.log_softmax(head(row[len(inp) - len(cont):len(inp)]), dim=-1)
            out[i] = logp.gather(1, cont[:, None]).squeeze(1).float().cpu()
    return out


def _causal_as_mask(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **_):
    """Stock's rows, the causal rule given as an additive mask (a masked kernel, as cached_rows' first form)."""
    from transformers.integrations.sdpa_attention import repeat_kv

    n = query.shape[2]
    allowed = torch.ones(n, n, dtype=torch.bool, device=query.device).tril()
    mask = torch.zeros(n, n, dtype=query.dtype, device=query.device)
    mask.masked_fill_(~allowed, torch.finfo(query.dtype).min)
    groups = getattr(module, "num_key_value_groups", 1)
    out = F.scaled_dot_product_attention(query, repeat_kv(key, groups), repeat_kv(value, groups), attn_mask=mask,
                                         scale=scaling)
    return out.transpose(1, 2).contiguous(), None


def _with_attention(name: str, function, run):
    """`run()` with attention implementation `name` being `function` (transformers looks it up at each call)."""
    from transformers import AttentionInterface

    previous = AttentionInterface._global_mapping[name]
    AttentionInterface.register(name, function)
    try:
        return run()
    finally:
        AttentionInterface.register(name, previous)


def compare(ref: list[torch.Tensor], other: list[torch.Tensor], dtype: torch.dtype) -> dict:
    """Per token, and per request summed in `dtype` as HFLM sums (`float(logprobs.sum())` in the model's dtype)."""
    token = max(float((a - b).abs().max()) for a, b in zip(ref, other))
    sums = [abs(float(a.to(dtype).sum()) - float(b.to(dtype).sum())) for a, b in zip(ref, other)]
    return {"requests": len(ref), "identical_tokens": all(torch.equal(a, b) for a, b in zip(ref, other)),
            "max_abs_token_logprob_diff": token, "max_abs_sum_diff": max(sums),
            "requests_with_identical_sum": sum(s == 0 for s in sums)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-dir", required=True)
    ap.add_argument("--questions", type=int, default=8)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from firefly_eval import checkpoints
    from firefly_eval.lm_eval_model import FireflyLM

    model, tok, _ = checkpoints.load(args.model_dir)
    model.eval()
    vocab = model.config.vocab_size
    gpu = torch.cuda.is_available()
    ctx_len, pre_len = ((900, 1400), 500) if gpu else ((40, 70), 24)
    arc = random_questions(args.questions, vocab, ctx_len, (3, 20), 4, None, seed=1)
    prefix = random_questions(1, vocab, (pre_len, pre_len), (1, 1), 1, None, seed=2)[0][0]
    mmlu = random_questions(4 * args.questions, vocab, (40, 120), (1, 1), 4, prefix, seed=3)
    results = {}
    for name, qs in (("multi-token continuations (ARC-like)", arc), ("shared prefix (MMLU-like)", mmlu)):
        reqs = requests_of(qs)
        ref = stock(model, reqs, batch=32)
        runs = {"stock, batch 7": lambda: stock(model, reqs, batch=7)}
        for backend in ("FLASH_ATTENTION", "EFFICIENT_ATTENTION", "CUDNN_ATTENTION", "MATH"):
            runs[f"stock, {backend} only"] = (backend, lambda: stock(model, reqs, batch=32))
        runs["stock rows, output layer on scored only"] = lambda: stock_head_on_scored(model, reqs, batch=32)

        def firefly(batch_size, **kwargs):  # FireflyLM's summed log-likelihoods
            lm = FireflyLM(pretrained=model, tokenizer=tok, batch_size=batch_size, **kwargs)
            return lambda: [torch.tensor([s]) for s, _ in
                            lm._loglikelihood_tokens([(None, c, x) for c, x in reqs], disable_tqdm=True)]

        runs["stock rows, causal as a mask, CUDNN only"] = ("CUDNN_ATTENTION", lambda: _with_attention(
            "sdpa", _causal_as_mask, lambda: stock(model, reqs, batch=32)))
        if qs is arc:
            runs["contexts, then all continuations over cache"] = firefly(32, min_pass_tokens=0)
            runs["the same, one question per pass"] = firefly(1, min_pass_tokens=0)
            runs["FireflyLM, per question, GPU row floor"] = firefly(1)
        else:
            runs["questions over cached prefix, 16 rows"] = firefly(16, min_pass_tokens=0)
            runs["the same, all rows in one pass"] = firefly(len(qs), min_pass_tokens=0)
        runs["FireflyLM as it is"] = firefly("auto")
        rows = {}
        for label, run in runs.items():
            backend, run = run if isinstance(run, tuple) else (None, run)
            try:
                with sdpa_kernel(getattr(SDPBackend, backend)) if backend else contextlib.nullcontext():
                    rows[label] = run()
            except RuntimeError as e:
                print(f"{name}: {label}: {str(e).splitlines()[0][:120]}")
        results[name] = {}
        print(f"\n{name}: {len(reqs)} requests, against stock at batch 32 (dtype {model.dtype})")
        print(f"{'variant':<42}{'same tokens':>12}{'max|d token|':>14}{'max|d sum|':>12}{'same sums':>11}")
        for label, other in rows.items():
            if not label.startswith("stock"):  # FireflyLM: summed log-likelihoods only
                ref_sums = [torch.tensor([float(r.to(model.dtype).sum())]) for r in ref]
                c = compare(ref_sums, other, torch.float64)
                c["identical_tokens"] = None
            else:
                c = compare(ref, other, model.dtype)
            results[name][label] = c
            print(f"{label:<42}{str(c['identical_tokens']):>12}{c['max_abs_token_logprob_diff']:>14.3g}"
                  f"{c['max_abs_sum_diff']:>12.3g}{c['requests_with_identical_sum']:>6}/{c['requests']}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
