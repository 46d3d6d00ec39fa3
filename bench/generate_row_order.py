"""Does an item's answer depend on its row in the batch? One model, the same prompts, two row orders.

    python bench/generate_row_order.py --model-dir /tmp/l7 --json row_order.json

`firefly-eval generate` promises per-item reproducible sampling: an item's tokens follow its seed and its own
logits. This checks, step by step, where that can break when the batch rows are reversed (same prompts, same
batch, other rows): the prefill logits (largest difference, rows bit-identical), greedy decoding and sampled
decoding with `StaticDecoder` (eager, and with the compiled step unless `--no-compile`), and the sampler alone
on identical logits. It prints one line per check: items identical out of all, and the largest logit
difference where one is measured. `--settings` instead runs greedy eager decoding under each named numerics
setting (`SETTINGS`), to find which kernel makes a row's result depend on its position.

`--repeat` compares the same row order run twice instead (the ninth session found sampled runs on an H200 not
repeating themselves, eager or compiled, at the same rate as with the rows reversed): with `--settings`, which
kernel is not deterministic run to run. The tenth session's answer: SDPA's default (cuDNN) for the masked
decoding step; the eleventh's: SDPA's memory-efficient kernel repeats 130/130 (but decodes at 4,276 tokens/s).
The decoder now attends with SDPA restricted to `PREFILL_ATTENTION` for the prefill and with matrix products for
a step (`firefly_eval.step_attention`), which the runs without `--settings` use; under `--settings` the setting
alone picks the kernels (`matmul-step`: the decoder's step after a prefill on SDPA's choice).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import time
from pathlib import Path

import torch

SETTINGS = {  # name -> (cuBLAS may reduce bf16 partial sums in bf16, SDPA backend allowed (None: SDPA's choice),
    #                  a decoding step on SDPA (False: the decoder's matrix products))
    "default": (True, None, True),
    "no-reduced-bf16": (False, None, True),
    "sdpa-math": (True, "MATH", True),
    "no-reduced-bf16+sdpa-math": (False, "MATH", True),
    "sdpa-efficient": (True, "EFFICIENT_ATTENTION", True),
    "sdpa-cudnn": (True, "CUDNN_ATTENTION", True),
    "matmul-step": (True, None, False),
}


@contextlib.contextmanager
def numerics(name: str):
    from torch.nn.attention import SDPBackend, sdpa_kernel

    reduced, backend, _ = SETTINGS[name]
    old = torch.backends.cuda.matmul.allow_bf16_reduced_precision_reduction
    torch.backends.cuda.matmul.allow_bf16_reduced_precision_reduction = reduced
    try:
        with sdpa_kernel(getattr(SDPBackend, backend)) if backend else contextlib.nullcontext():
            yield
    finally:
        torch.backends.cuda.matmul.allow_bf16_reduced_precision_reduction = old


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-dir", required=True)
    ap.add_argument("--set", type=Path, default=Path("eval_sets/zh130.jsonl"), dest="set_path")
    ap.add_argument("--items", type=int, default=130)
    ap.add_argument("--steps", type=int, default=64, help="new tokens per decoding check")
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--settings", nargs="+", choices=list(SETTINGS), help="greedy eager decoding under each")
    ap.add_argument("--repeat", action="store_true", help="the same row order twice instead of two orders")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    from firefly_core.templates import get_template
    from firefly_eval.checkpoints import load
    from firefly_eval.eval_set import load_set
    from firefly_eval.generate import BatchedGenerator, greedy_pick, item_seed, render_prompt, stop_token_ids
    from firefly_eval.sampling import ItemSampler

    model, tokenizer, _ = load(args.model_dir)
    template = get_template("auto", tokenizer)
    items = load_set(args.set_path).items[: args.items]
    texts = [render_prompt(template, tokenizer, it.prompt, None) for it in items]
    seeds = [item_seed(42, it.id) for it in items]
    stop_ids = stop_token_ids(tokenizer, model.generation_config.eos_token_id, template)
    vocab = model.get_output_embeddings().weight.shape[0]
    checks = {}

    def report(name, same, total, max_diff=None, seconds=None):
        checks[name] = {"identical": same, "items": total, "max_abs_logit_difference": max_diff, "seconds": seconds}
        diff = "" if max_diff is None else f", max |d logit| {max_diff:.3g}"
        print(f"{name:<52} {same:>4}/{total}{diff}", flush=True)

    def generator(compiled: bool):
        gen = BatchedGenerator(model, tokenizer, texts, args.steps, stop_ids, len(texts), compile_step=compiled)
        return gen, paired(list(gen.order))

    def paired(order: list[int]) -> dict[str, list[int]]:
        return {"first": order, "again": list(order)} if args.repeat else {"as sorted": order,
                                                                          "reversed": order[::-1]}

    def report_equal(name, by_order, **kw):  # items whose result is the same in both runs
        a, b = by_order.values()
        report(name, sum(a[i] == b[i] for i in range(len(texts))), len(texts), **kw)

    def report_logits(name, by_order):  # rows whose logits are bit-identical in both runs, largest difference
        a, b = by_order.values()
        diffs = [float((a[i] - b[i]).abs().max()) for i in range(len(texts))]
        report(name, sum(d == 0 for d in diffs), len(texts), max(diffs))

    for name in args.settings or []:
        gen, orders = generator(False)
        gen.decoder.attention_backends = None  # the setting, not the decoder's own restriction, picks the kernels
        gen.decoder.matmul_steps = not SETTINGS[name][2]
        tokens, step_logits = {}, {}
        with numerics(name):
            for order_name, order in orders.items():
                gen.order = order
                members, enc = gen.batch_inputs(gen.batches[0])
                out = gen.decoder.decode(enc["input_ids"], enc["attention_mask"], 2, greedy_pick, stop_ids)
                with torch.no_grad(), gen.decoder.attention():  # the step after the two tokens just decoded
                    logits = gen.decoder._forward(out[:, -1:], enc["attention_mask"].long().sum(-1, keepdim=True) + 1,
                                                  gen.decoder.cache_mask(enc["attention_mask"]))
                step_logits[order_name] = {i: logits[r] for r, i in enumerate(members)}
                tokens[order_name] = dict(gen.token_rows(None))
        report_logits(f"[{name}] decoding step logits", step_logits)
        report_equal(f"[{name}] greedy, eager, {args.steps} steps", tokens)
    compiled_too = not args.no_compile and model.device.type == "cuda"
    for compiled in [] if args.settings else [False] + [True] * compiled_too:
        gen, orders = generator(compiled)
        if compiled:
            gen.warm_up()
        else:  # prefill logits row by row, and the sampler alone
            prefill = {}
            for name, order in orders.items():
                gen.order = order
                members, enc = gen.batch_inputs(gen.batches[0])
                with torch.no_grad():
                    out = model(**enc, logits_to_keep=1).logits[:, -1].float()
                prefill[name] = {i: out[r] for r, i in enumerate(members)}
            report_logits("prefill logits (plain forward)", prefill)
            torch.manual_seed(0)
            fake = torch.randn(len(texts), vocab, device=model.device).to(model.dtype)
            picked = {}
            for name, perm in paired(list(range(len(texts)))).items():
                row = ItemSampler([seeds[i] for i in perm], vocab, 0.35, 0.9, model.device)(fake[perm], 3).tolist()
                picked[name] = {i: row[r] for r, i in enumerate(perm)}
            report_equal("sampler alone on identical logits", picked)
        for mode, item_seeds in (("greedy", None), ("sampled", seeds)):
            tokens = {}
            for name, order in orders.items():
                gen.order = order
                t0 = time.perf_counter()
                tokens[name] = dict(gen.token_rows(item_seeds))
                seconds = time.perf_counter() - t0
            report_equal(f"{mode}, {'compiled step' if compiled else 'eager'}, {args.steps} steps", tokens,
                         seconds=seconds)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                         "dtype": str(model.dtype), "device": str(model.device), "checks": checks},
                                        indent=2))


if __name__ == "__main__":
    main()
