"""`firefly-eval generate` throughput: the reference paths and ours on the same model and prompts, one run.

Rows of the table:
- `plain generate, greedy, all at once`: transformers' `model.generate`, every prompt in one left-padded batch
  (the issue's reference column);
- `before: batches of 8, per-row generators`: `firefly-eval generate`'s default path before the fast path
  (batches of 8, longest prompts first, `generate` with a logits processor drawing each row with its own
  `torch.Generator`), on the first `--reference-items` prompts only (all 130 would take ~7 minutes at 7B);
- `ours, greedy` and `ours, sampled` (three times: again as it was, then with the batch rows in reverse order):
  `firefly_eval.generate.BatchedGenerator`, after one warm-up (compiling the decoding step and capturing its
  CUDA graph on a GPU), timed separately. `--sdpa-step` decodes its steps on SDPA (restricted as the prefill: the
  memory-efficient kernel on a GPU) instead of the decoder's matrix products, for the comparison.
Checks: ours greedy against plain greedy token for token (equal on a CPU in float32; in bf16 on a GPU a
random-init model's near-flat logits let rounding differences flip a token, so the common prefix is reported
too), and ours sampled reproducible when run again and across the two batch orders.
"""
from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace


def add_arguments(p) -> None:
    p.add_argument("--set", type=Path, default=Path("eval_sets/zh130.jsonl"), dest="set_path")
    p.add_argument("--items", type=int, default=130)
    p.add_argument("--max-new-tokens", type=int, default=512)
    p.add_argument("--template", default="auto", help="as firefly-eval generate's (auto: the tokenizer's own, "
                   "else 'firefly')")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--temperature", type=float, default=0.35)
    p.add_argument("--top-p", type=float, default=0.9)
    p.add_argument("--batch-size", default="auto", help="ours: as firefly-eval generate's --batch-size")
    p.add_argument("--no-compile", action="store_true", help="ours: decode eagerly on a GPU too")
    p.add_argument("--reference-items", type=int, default=8,
                   help="prompts answered by the before path (batches of 8; 0 skips it)")
    p.add_argument("--device", help="default: cuda when available")
    p.add_argument("--no-plain", action="store_true", help="skip plain greedy generate (and the check against it)")
    p.add_argument("--sdpa-step", action="store_true",
                   help="ours: decoding steps on SDPA (restricted as the prefill) instead of the matrix-product step")


def _sync(device) -> None:
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn, device):
    _sync(device)
    start = time.perf_counter()
    result = fn()
    _sync(device)
    return result, time.perf_counter() - start


def plain_greedy(model, tokenizer, texts: list[str], max_new_tokens: int, stop_ids: list[int]) -> list[list[int]]:
    """transformers' own greedy `generate` on all prompts at once: each prompt's new tokens up to its stop."""
    import torch

    from firefly_eval.generate import cut_at_stop

    tokenizer.padding_side = "left"
    enc = tokenizer(texts, add_special_tokens=False, padding=True, return_tensors="pt").to(model.device)
    with torch.inference_mode():
        out = model.generate(**enc, do_sample=False, max_new_tokens=max_new_tokens, eos_token_id=stop_ids,
                             pad_token_id=tokenizer.pad_token_id, temperature=None, top_p=None, top_k=None)
    return [cut_at_stop(row, stop_ids) for row in out[:, enc["input_ids"].shape[1]:].tolist()]


def per_row_generators_before(model, tokenizer, texts: list[str], seeds: list[int], settings, stop_ids: list[int],
                              batch_size: int = 8) -> list[list[int]]:
    """`firefly-eval generate` as it was before the fast path: batches of 8, longest prompts first, `generate`
    with temperature, top-p and a logits processor that draws each row with its own seeded generator."""
    import torch
    from transformers import LogitsProcessor, LogitsProcessorList, TemperatureLogitsWarper, TopPLogitsWarper

    from firefly_eval.generate import cut_at_stop

    class PerRowSampler(LogitsProcessor):
        def __init__(self, batch_seeds):
            self.generators = [torch.Generator(device=model.device).manual_seed(s) for s in batch_seeds]

        def __call__(self, input_ids, scores):
            probs = torch.softmax(scores.float(), dim=-1)
            picked = torch.cat([torch.multinomial(probs[i], 1, generator=g) for i, g in enumerate(self.generators)])
            out = torch.full_like(scores, float("-inf"))
            out[torch.arange(len(self.generators), device=scores.device), picked] = 0.0
            return out

    tokenizer.padding_side = "left"
    order = sorted(range(len(texts)), key=lambda i: -len(tokenizer.encode(texts[i], add_special_tokens=False)))
    tokens: list[list[int]] = [[] for _ in texts]
    for start in range(0, len(order), batch_size):
        batch = order[start:start + batch_size]
        enc = tokenizer([texts[i] for i in batch], add_special_tokens=False, padding=True,
                        return_tensors="pt").to(model.device)
        processors = LogitsProcessorList([TemperatureLogitsWarper(settings.temperature),
                                          TopPLogitsWarper(settings.top_p), PerRowSampler([seeds[i] for i in batch])])
        with torch.inference_mode():
            out = model.generate(**enc, do_sample=False, max_new_tokens=settings.max_new_tokens,
                                 logits_processor=processors, eos_token_id=stop_ids,
                                 pad_token_id=tokenizer.pad_token_id, temperature=None, top_p=None, top_k=None)
        for i, row in zip(batch, out[:, enc["input_ids"].shape[1]:].tolist()):
            tokens[i] = cut_at_stop(row, stop_ids)
    return tokens


def ours(generator, seeds: list[int] | None, settings) -> list[list[int]]:
    """Our tokens per prompt (greedy when `seeds` is None), through `generator`'s decoder."""
    tokens: list[list[int]] = [[] for _ in generator.ids]
    for i, row in generator.token_rows(seeds, settings.temperature, settings.top_p):
        tokens[i] = row
    return tokens


def _common_prefix(a: list[int], b: list[int]) -> int:
    return next((k for k, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


def run(args) -> dict:
    import torch

    from firefly_core.models import default_device
    from firefly_core.templates import get_template
    from firefly_eval.checkpoints import load
    from firefly_eval.eval_set import load_set
    from firefly_eval.generate import BatchedGenerator, item_seed, parse_batch_size, render_prompt, stop_token_ids

    device = args.device or default_device()
    (model, tokenizer, _), load_s = _timed(lambda: load(str(args.model_dir), device=device), device)
    template = get_template(args.template, tokenizer)
    items = load_set(args.set_path).items[: args.items]
    texts = [render_prompt(template, tokenizer, it.prompt, None) for it in items]
    seeds = [item_seed(args.seed, it.id) for it in items]
    stop_ids = stop_token_ids(tokenizer, model.generation_config.eos_token_id, template)
    settings = SimpleNamespace(max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_p=args.top_p)
    lengths = [len(tokenizer.encode(t, add_special_tokens=False)) for t in texts]
    print(f"model {args.model_dir} on {device} ({model.dtype}), loaded in {load_s:.1f} s; {len(texts)} prompts of "
          f"{min(lengths)}-{max(lengths)} tokens, template {template.name}, {args.max_new_tokens} new tokens at most",
          flush=True)
    rows: dict[str, dict] = {}

    def record(name, tokens, seconds):
        n = sum(map(len, tokens))
        rows[name] = {"seconds": round(seconds, 2), "items": len(tokens), "new_tokens": n,
                      "tokens_per_s": round(n / seconds, 1)}
        print(f"  {name}: {seconds:.1f} s, {n} tokens, {n / seconds:,.0f} tokens/s", flush=True)
        if torch.device(device).type == "cuda":
            torch.cuda.empty_cache()

    plain = None
    if not args.no_plain:
        plain, seconds = _timed(lambda: plain_greedy(model, tokenizer, texts, args.max_new_tokens, stop_ids), device)
        record("plain generate, greedy, all at once", plain, seconds)
    if args.reference_items:
        k = args.reference_items
        before, seconds = _timed(lambda: per_row_generators_before(model, tokenizer, texts[:k], seeds[:k], settings,
                                                                    stop_ids), device)
        record("before: batches of 8, per-row generators", before, seconds)

    generator = BatchedGenerator(model, tokenizer, texts, args.max_new_tokens, stop_ids,
                                 parse_batch_size(args.batch_size), compile_step=False if args.no_compile else None)
    generator.decoder.matmul_steps &= not args.sdpa_step
    _, warmup_s = _timed(generator.warm_up, device)
    print(f"  ours: warm-up {warmup_s:.1f} s ({generator.decoder.path}); {len(generator.batches)} batch(es) of "
          f"{generator.decoder.rows}", flush=True)
    greedy, seconds = _timed(lambda: ours(generator, None, settings), device)
    record("ours, greedy", greedy, seconds)
    sampled, seconds = _timed(lambda: ours(generator, seeds, settings), device)
    record("ours, sampled", sampled, seconds)
    repeated, seconds = _timed(lambda: ours(generator, seeds, settings), device)
    record("ours, sampled again", repeated, seconds)
    generator.order.reverse()  # the same prompts in other rows (and other batches when there are several)
    sampled_again, seconds = _timed(lambda: ours(generator, seeds, settings), device)
    record("ours, sampled, rows reversed", sampled_again, seconds)

    repeat_prefix = [_common_prefix(a, b) for a, b in zip(sampled, repeated)]
    checks = {"sampled_repeated_items": sum(a == b for a, b in zip(sampled, repeated)),
              "sampled_repeat_first_difference": [min(repeat_prefix), sorted(repeat_prefix)[len(repeat_prefix) // 2]],
              "sampled_reproducible_items": sum(a == b for a, b in zip(sampled, sampled_again)), "items": len(texts)}
    if plain is not None:
        prefixes = [_common_prefix(a, b) for a, b in zip(greedy, plain)]
        checks["greedy_identical_items"] = sum(a == b for a, b in zip(greedy, plain))
        checks["greedy_mean_common_prefix"] = round(sum(prefixes) / len(prefixes), 1)
    print(f"\n{'path':<44} {'seconds':>8} {'items':>6} {'new tokens':>11} {'tokens/s':>9}")
    for name, r in rows.items():
        print(f"{name:<44} {r['seconds']:>8.1f} {r['items']:>6} {r['new_tokens']:>11} {r['tokens_per_s']:>9,.0f}")
    with_warmup = rows["ours, sampled"]["new_tokens"] / (rows["ours, sampled"]["seconds"] + warmup_s)
    print(f"ours warm-up (compile + graph capture): {warmup_s:.1f} s; decoding: {generator.decoder.path}; "
          f"sampled including the warm-up (a firefly-eval generate run): {with_warmup:,.0f} tokens/s")
    if plain is not None:
        print(f"greedy, ours == plain generate token for token: {checks['greedy_identical_items']}/{len(texts)} items "
              f"(mean common prefix {checks['greedy_mean_common_prefix']} tokens)")
    earliest, median = checks["sampled_repeat_first_difference"]
    print(f"sampled, ours the same when run again: {checks['sampled_repeated_items']}/{len(texts)} items "
          f"(first different token: step {earliest} at the earliest, {median} the median); "
          f"the same with rows reversed: {checks['sampled_reproducible_items']}/{len(texts)} items")
    return {"rows": rows, "checks": checks, "warmup_seconds": round(warmup_s, 2), "load_seconds": round(load_s, 2),
            "sampled_with_warmup_tokens_per_s": round(with_warmup, 1), "prompt_tokens": [min(lengths), max(lengths)],
            "cache_positions": generator.decoder.max_len, "decoding": generator.decoder.path,
            "matmul_steps": generator.decoder.matmul_steps, "batches": len(generator.batches), "batch_rows": generator.decoder.rows,
            "device": torch.cuda.get_device_name(device) if torch.device(device).type == "cuda" else "cpu",
            "dtype": str(model.dtype), "template": template.name}
