"""Which computation reproduces lm-eval's stock `HFLM` log-probabilities bit for bit (bf16, one GPU)?

Stock HFLM scores each (context, continuation) request as its own row, `context + continuation[:-1]`, rows
right-padded into a batch, one `model(inputs).logits` call without an attention mask (SDPA's causal kernel),
then a log-softmax in the model's dtype over every position. The eighth session measured that it is
batch-invariant (its own log-likelihoods at batch 16 and at 'auto' are identical) while `FireflyLM` (packed
continuations under a 4-D mask) differs by up to 2.0 in bf16. This script takes random requests (the model is
random-init anyway) and compares, per continuation token, stock's log-probability with:

- stock's own layout at another batch size, and under each SDPA backend forced (which kernel stock runs);
- `FireflyLM` as it is (sums only);
- a candidate: each context run once (stock's kernel, one row), then its continuations as rows attending to
  the context's cached keys/values with SDPA's lower-right causal bias (`causal_lower_right`: flash attention's
  own causal alignment), output layer on full hidden tensors or on the scored positions only;
- the same, every question's continuations packed into one pass of flash attention's varlen kernel (how a
  batch of questions with contexts of different lengths can run together);
- the candidate with a cached few-shot prefix shared by many questions (MMLU's layout), questions batched.

    python bench/lm_eval_exactness.py --model-dir /tmp/l7 [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ATTN = "firefly_lower_right"


def _register_lower_right() -> None:
    """`ATTN`: SDPA with the lower-right causal bias (queries are the last tokens of the keys), any mask ignored."""
    from torch.nn.attention.bias import causal_lower_right
    from transformers import AttentionInterface, AttentionMaskInterface
    from transformers.integrations.sdpa_attention import repeat_kv

    def attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **_):
        groups = getattr(module, "num_key_value_groups", 1)
        key, value = repeat_kv(key, groups), repeat_kv(value, groups)
        bias = causal_lower_right(query.shape[2], key.shape[2])
        out = F.scaled_dot_product_attention(query, key, value, attn_mask=bias, scale=scaling)
        return out.transpose(1, 2).contiguous(), None

    AttentionInterface.register(ATTN, attention)
    AttentionMaskInterface.register(ATTN, lambda *a, **k: None)


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


def over_cached(model, rows: torch.Tensor, kv) -> torch.Tensor:
    """Hidden states of right-padded `rows`, each attending to the cached keys/values `kv` (one row's, shared by
    all) and to itself, with the lower-right causal bias."""
    from transformers import DynamicCache

    n = len(rows)
    cache = DynamicCache(ddp_cache_data=[(k.expand(n, -1, -1, -1), v.expand(n, -1, -1, -1)) for k, v in kv])
    model.set_attn_implementation(ATTN)
    try:
        return model.get_decoder()(input_ids=rows, cache=cache, use_cache=True).last_hidden_state
    finally:
        model.set_attn_implementation("sdpa")


@torch.no_grad()
def candidate(model, questions, head_on_full: bool) -> list[torch.Tensor]:
    """Each context once (default attention, one row), its continuations as rows over the cached context."""
    decoder, head = model.get_decoder(), model.get_output_embeddings()
    out = []
    for ctx, conts in questions:
        first = decoder(input_ids=torch.tensor([ctx], device=model.device), use_cache=True)
        kv = [(layer.keys, layer.values) for layer in first.cache.layers]
        last = first.last_hidden_state[:, -1] if not head_on_full else None
        first_logits = head(first.last_hidden_state)[:, -1] if head_on_full else head(last)
        rest_len = max(len(c) - 1 for c in conts)
        rows = torch.stack([F.pad(torch.tensor(c[:-1], dtype=torch.long), (0, rest_len - len(c) + 1))
                            for c in conts]).to(model.device) if rest_len else None
        rest = None
        if rows is not None:
            hidden = over_cached(model, rows, kv)
            rest = head(hidden) if head_on_full else hidden
        for r, c in enumerate(conts):
            logits = [first_logits[0]]
            if len(c) > 1:
                logits += list(rest[r, :len(c) - 1] if head_on_full else head(rest[r, :len(c) - 1]))
            logp = F.log_softmax(torch.stack(logits), dim=-1)
            out.append(logp.gather(1, torch.tensor(c, device=model.device)[:, None]).squeeze(1).float().cpu())
    return out


VARLEN = "firefly_varlen_lower_right"
_packed: dict = {}  # the varlen call's context keys/values and row bounds, set around each forward


def _register_varlen() -> None:
    """`VARLEN`: rows packed into one sequence; row r attends to its question's cached context and to itself
    up to the token (flash attention's varlen kernel, causal = lower-right aligned). On a CPU, SDPA row by row."""
    from transformers import AttentionInterface, AttentionMaskInterface

    try:
        from torch.nn.attention.varlen import varlen_attn
    except ImportError:
        varlen_attn = None

    def attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **_):
        ctx, rows = _packed["kv"], _packed["rows"]  # ctx[question][layer] = (k, v) as [n, H, D]; rows: (question, a, b)
        q, k, v = query[0].transpose(0, 1), key[0].transpose(0, 1), value[0].transpose(0, 1)  # [T, H, D]
        groups = q.shape[1] // k.shape[1]
        keys, values, cu_k = [], [], [0]
        for question, a, b in rows:
            ck, cv = ctx[question][module.layer_idx]
            keys += [ck, k[a:b]]
            values += [cv, v[a:b]]
            cu_k.append(cu_k[-1] + len(ck) + b - a)
        k_all, v_all = torch.cat(keys), torch.cat(values)
        if groups > 1:
            k_all, v_all = k_all.repeat_interleave(groups, dim=1), v_all.repeat_interleave(groups, dim=1)
        cu_q = [0] + [b for _, _, b in rows]
        if q.is_cuda and varlen_attn is not None:
            import inspect

            params = inspect.signature(varlen_attn).parameters  # PyTorch 2.10 has is_causal, later window_size
            kwargs = {"window_size": (-1, 0)} if "window_size" in params else {"is_causal": True}
            if "scale" in params:
                kwargs["scale"] = scaling
            elif scaling is not None and abs(scaling - q.shape[-1] ** -0.5) > 1e-12:
                raise SystemExit("this PyTorch's varlen_attn takes no scale, and the model's is not head_dim**-0.5")
            out = varlen_attn(q, k_all, v_all, torch.tensor(cu_q, device=q.device, dtype=torch.int32),
                              torch.tensor(cu_k, device=q.device, dtype=torch.int32),
                              max(b - a for _, a, b in rows), max(y - x for x, y in zip(cu_k, cu_k[1:])), **kwargs)
        else:
            from torch.nn.attention.bias import causal_lower_right

            out = torch.empty_like(q)
            for (_, a, b), x, y in zip(rows, cu_k, cu_k[1:]):
                out[a:b] = F.scaled_dot_product_attention(
                    q[a:b].transpose(0, 1), k_all[x:y].transpose(0, 1), v_all[x:y].transpose(0, 1),
                    attn_mask=causal_lower_right(b - a, y - x), scale=scaling).transpose(0, 1)
        return out[None], None

    AttentionInterface.register(VARLEN, attention)
    AttentionMaskInterface.register(VARLEN, lambda *a, **k: None)


@torch.no_grad()
def candidate_varlen(model, questions) -> list[torch.Tensor]:
    """Each context once (default attention, one row); then every continuation of every question packed into
    one varlen forward pass, each attending to its question's cached context."""
    decoder, head = model.get_decoder(), model.get_output_embeddings()
    kv, first_logits = [], []
    for ctx, _ in questions:
        first = decoder(input_ids=torch.tensor([ctx], device=model.device), use_cache=True)
        kv.append([(layer.keys[0].transpose(0, 1), layer.values[0].transpose(0, 1)) for layer in first.cache.layers])
        first_logits.append(head(first.last_hidden_state[:, -1])[0])
    tokens, positions, rows, where = [], [], [], {}
    for qi, (ctx, conts) in enumerate(questions):
        for k, c in enumerate(conts):
            if len(c) > 1:
                a = len(tokens)
                tokens += c[:-1]
                positions += range(len(ctx), len(ctx) + len(c) - 1)
                rows.append((qi, a, len(tokens)))
                where[qi, k] = a
    logits = None
    if rows:
        _packed.update(kv=kv, rows=rows)
        model.set_attn_implementation(VARLEN)
        try:
            hidden = decoder(input_ids=torch.tensor([tokens], device=model.device),
                             position_ids=torch.tensor([positions], device=model.device),
                             use_cache=False).last_hidden_state[0]
        finally:
            model.set_attn_implementation("sdpa")
            _packed.clear()
        logits = head(hidden)
    out = []
    for qi, (_, conts) in enumerate(questions):
        for k, c in enumerate(conts):
            rows_logits = [first_logits[qi][None]]
            if len(c) > 1:
                rows_logits.append(logits[where[qi, k]:where[qi, k] + len(c) - 1])
            logp = F.log_softmax(torch.cat(rows_logits), dim=-1)
            out.append(logp.gather(1, torch.tensor(c, device=model.device)[:, None]).squeeze(1).float().cpu())
    return out


@torch.no_grad()
def candidate_shared_prefix(model, questions, prefix_len: int, batch: int) -> list[torch.Tensor]:
    """MMLU's layout: one cached prefix for every question; questions (one-token continuations) batched."""
    decoder, head = model.get_decoder(), model.get_output_embeddings()
    pre = decoder(input_ids=torch.tensor([questions[0][0][:prefix_len]], device=model.device), use_cache=True)
    kv = [(layer.keys, layer.values) for layer in pre.cache.layers]
    scores: dict[int, torch.Tensor] = {}
    for s in range(0, len(questions), batch):
        chunk = questions[s:s + batch]
        own = [ctx[prefix_len:] for ctx, _ in chunk]
        width = max(len(x) for x in own)
        rows = torch.stack([F.pad(torch.tensor(x), (0, width - len(x))) for x in own]).to(model.device)
        logp = F.log_softmax(head(over_cached(model, rows, kv)), dim=-1)
        for r, (x, (_, conts)) in enumerate(zip(own, chunk)):
            for k, c in enumerate(conts):
                scores[(s + r) * len(conts) + k] = logp[r, len(x) - 1, c[0]].float().cpu()[None]
    return [scores[i] for i in range(len(scores))]


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
    _register_lower_right()
    _register_varlen()
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
        rows = {"stock, batch 7": stock(model, reqs, batch=7)}
        for backend in ("FLASH_ATTENTION", "EFFICIENT_ATTENTION", "CUDNN_ATTENTION", "MATH"):
            try:
                with sdpa_kernel(getattr(SDPBackend, backend)):
                    rows[f"stock, {backend} only"] = stock(model, reqs, batch=32)
            except RuntimeError as e:
                print(f"{name}: {backend}: {str(e).splitlines()[0][:120]}")
        lm = FireflyLM(pretrained=model, tokenizer=tok, batch_size=32)
        sums = lm._loglikelihood_tokens([(None, c, x) for c, x in reqs], disable_tqdm=True)
        rows["FireflyLM as it is (sums)"] = [torch.tensor([s]) for s, _ in sums]
        if qs is arc:
            rows["candidate, head on full tensors"] = candidate(model, qs, head_on_full=True)
            rows["candidate, head on scored positions"] = candidate(model, qs, head_on_full=False)
            rows["candidate, all continuations one varlen pass"] = candidate_varlen(model, qs)
        else:
            rows["candidate, shared prefix, 16 rows"] = candidate_shared_prefix(model, qs, len(prefix), 16)
        results[name] = {}
        print(f"\n{name}: {len(reqs)} requests, against stock at batch 32 (dtype {model.dtype})")
        print(f"{'variant':<42}{'same tokens':>12}{'max|d token|':>14}{'max|d sum|':>12}{'same sums':>11}")
        for label, other in rows.items():
            if label.startswith("FireflyLM"):
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
