"""Training throughput: the Firefly-style QLoRA baseline against firefly-train's own step, same GPU, one run.

The baseline is the code path Firefly users already have: transformers' `Trainer` with `bf16=True` (so bf16
autocast), `gradient_checkpointing=True` and `optim="paged_adamw_32bit"`, over a bitsandbytes NF4 base (double
quant, bf16 compute) prepared by peft's `prepare_model_for_kbit_training`, LoRA on all linear layers,
embed_tokens/lm_head trained in full (peft modules_to_save), batches padded to their longest sequence. Both
paths take learning rate, schedule, clipping, LoRA shape and seed from the same recipe. Weights are random
(speed does not depend on their values) and saved locally first. Prints non-padding tokens/s, peak memory
(`max_memory_allocated`, then with the paged optimizer state it leaves out: what the card holds) and the ratio.

`--kind fixed`: every micro-batch is `--micro-batch` full blocks of `--seq` tokens on both paths, and with both
paths the script prints how far their loss curves differ (same data, weights and seed; `--steps 50` for the
issue's 50-step check). `--kind sft`: conversations of log-normal lengths (median 300, 90th percentile 900
tokens, at most 1,024; `sft_lengths`). The baseline pads micro-batches of `--micro-batch` conversations; the
firefly path packs conversations of the same mix into rows of up to `--seq` tokens as `firefly-train sft`
does (`pack_rows`) and a micro-batch is `--micro-batch` such rows, so its steps hold more conversations and
the loss curves are not compared.

    python bench/train_throughput.py --tokenizer DATA/tokenizers/chinese-llama2 --kind fixed
    python bench/train_throughput.py ... --which firefly -- --loss_chunk_tokens 0 --uncheckpointed_layers 6

Arguments after `--` are firefly-train config overrides of the firefly path (`--key value`, as on its
command line), to time one change at a time. `--profile N` runs N more steps of each path under
torch.profiler after the timed ones and prints where a step's time goes by op class (`bench/op_profile.py`).

`--tokenizer` is a folder whose vocabulary matches `--vocab` (the 55,296-piece Chinese-LLaMA-2 one); the
firefly path needs it because firefly-train refuses a model whose embedding is larger than its tokenizer.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import time
from bisect import bisect_left
from itertools import accumulate
from pathlib import Path

import torch
from op_profile import breakdown, print_breakdown, profiled


def make_random_model(shape: Path, vocab: int, out: Path) -> Path:
    from transformers import AutoConfig, AutoModelForCausalLM

    if (out / "config.json").is_file():
        return out
    cfg = AutoConfig.for_model(**{**json.loads(shape.read_text()), "vocab_size": vocab})
    torch.manual_seed(0)
    with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
        model = AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16)
    model.save_pretrained(out)
    return out


def sft_lengths(n: int, seed: int = 0, median: int = 300, p90: int = 900, cap: int = 1024) -> list[int]:
    """Log-normal conversation lengths: median 300, 90th percentile 900, capped at 1024."""
    g = torch.Generator().manual_seed(seed)
    sigma = (math.log(p90) - math.log(median)) / 1.2815515655446004
    z = torch.randn(n, generator=g, dtype=torch.float64)
    return [max(8, min(cap, int(round(math.exp(math.log(median) + sigma * float(v)))))) for v in z]


def random_tokens(lengths: list[int], vocab: int, seed: int = 0) -> list[torch.Tensor]:
    """Random ids (3 and up, past the special tokens) of each length, from one seeded generator: reproducible."""
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(3, vocab, (n,), generator=g) for n in lengths]


def packed_sft_rows(vocab: int, seq: int, rows: int, seed: int = 0) -> list[dict]:
    """`rows` rows of up to `seq` tokens packed by `pack_rows` from the log-normal conversation mix: as many
    conversations as fill `rows` rows completely (each has at least 8 tokens), so only the last few rows packed
    (of the shortest conversations) are left over."""
    from firefly_train.data.sft import pack_rows

    lengths = sft_lengths(rows * seq // 8 + 1, seed)
    lengths = lengths[:bisect_left(list(accumulate(lengths)), rows * seq) + 1]
    items = [{"input_ids": s, "labels": s} for s in random_tokens(lengths, vocab, seed)]
    return pack_rows(items, seq)[:rows]


def batches(kind: str, vocab: int, seq: int, micro: int, steps: int, seed: int = 0):
    """Yield lists of sequences (token lists); fixed = full blocks, sft = the log-normal mix."""
    lengths = sft_lengths(micro * steps, seed) if kind == "sft" else [seq] * (micro * steps)
    seqs = random_tokens(lengths, vocab, seed)
    for i in range(steps):
        yield seqs[i * micro:(i + 1) * micro]


def pad_batch(seqs, device):
    n = max(len(s) for s in seqs)
    ids = torch.zeros(len(seqs), n, dtype=torch.long)
    mask = torch.zeros(len(seqs), n, dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = s
        mask[i, : len(s)] = 1
    labels = ids.masked_fill(mask == 0, -100)
    return {"input_ids": ids.to(device), "attention_mask": mask.to(device), "labels": labels.to(device)}


def recipe_config(args, **overrides):
    """The recipe both paths train with (learning rate, schedule, clipping, LoRA, seed), plus overrides."""
    from firefly_train.config import load_config
    from firefly_train.train_config import PretrainConfig

    return load_config(PretrainConfig, args.recipe, {
        "tokenizer": str(args.tokenizer), "data": ["synthetic"], "micro_batch_size": args.micro_batch,
        "gradient_accumulation_steps": 1, "max_seq_length": args.seq, "gradient_checkpointing": args.checkpointing,
        "max_steps": total_steps(args), "seed": args.seed, **overrides})


def total_steps(args) -> int:
    return args.warmup + args.steps + args.profile


def baseline(model_dir: Path, kind: str, args) -> dict:
    """What Firefly users run: transformers' `Trainer(bf16=True, gradient_checkpointing=True,
    optim="paged_adamw_32bit")` over an NF4 double-quant base prepared by `prepare_model_for_kbit_training`, LoRA
    on all linear layers, embed_tokens/lm_head trained (peft modules_to_save), micro-batches padded to their
    longest sequence. Same recipe values as the firefly path; the data in the same order (no shuffling)."""
    import tempfile

    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from torch.utils.data import SequentialSampler
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig, Trainer, TrainerCallback, TrainingArguments

    cfg = recipe_config(args)
    cuda = torch.cuda.is_available()
    q = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                           bnb_4bit_compute_dtype=torch.bfloat16)
    model = AutoModelForCausalLM.from_pretrained(model_dir, quantization_config=q, dtype=torch.bfloat16,
                                                 device_map={"": 0 if cuda else "cpu"})
    model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=args.checkpointing)
    lora = LoraConfig(r=cfg.lora.r, lora_alpha=cfg.lora.alpha, lora_dropout=cfg.lora.dropout,
                      target_modules="all-linear", modules_to_save=["embed_tokens", "lm_head"], task_type="CAUSAL_LM")
    torch.manual_seed(args.seed)  # LoRA init; firefly-train seeds the same way (cfg.seed)
    model = get_peft_model(model, lora)
    steps = list(batches(kind, args.vocab, args.seq, args.micro_batch, total_steps(args)))
    rows = [{"input_ids": s} for b in steps for s in b]
    step_tokens = [sum(len(s) for s in b) for b in steps]  # non-padding tokens of each step

    class InOrder(Trainer):  # Trainer shuffles by default; the loss comparison needs the firefly path's order
        def _get_train_sampler(self, *a, **k):
            return SequentialSampler(self.train_dataset)

    class Clock(TrainerCallback):
        """Time the steps after warmup, count their non-padding tokens; keep every step's loss; profile the
        `--profile` steps after the timed ones."""

        def __init__(self):
            self.losses, self.tokens, self.t0, self.seconds = [], 0, None, None
            self.profiling = contextlib.ExitStack()
            self.prof = None

        def on_step_begin(self, targs, state, control, **kw):
            if state.global_step == args.warmup:
                sync()
                if cuda:
                    torch.cuda.reset_peak_memory_stats()
                self.t0 = time.perf_counter()
            if args.profile and state.global_step == args.warmup + args.steps:
                self.prof = self.profiling.enter_context(profiled())

        def on_step_end(self, targs, state, control, **kw):
            if args.warmup < state.global_step <= args.warmup + args.steps:
                self.tokens += step_tokens[state.global_step - 1]
            if state.global_step == args.warmup + args.steps:
                sync()
                self.seconds = time.perf_counter() - self.t0
            if state.global_step == total_steps(args):
                self.profiling.close()

        def on_log(self, targs, state, control, logs=None, **kw):
            if logs and "loss" in logs:
                self.losses.append(logs["loss"])

    clock = Clock()

    sync = torch.cuda.synchronize if cuda else (lambda: None)
    with tempfile.TemporaryDirectory() as out:
        targs = TrainingArguments(
            output_dir=out, per_device_train_batch_size=args.micro_batch, gradient_accumulation_steps=1,
            max_steps=total_steps(args), learning_rate=cfg.learning_rate, lr_scheduler_type=cfg.lr_scheduler,
            warmup_steps=cfg.warmup_steps or math.ceil(cfg.warmup_ratio * total_steps(args)),  # as Trainer.step
            weight_decay=cfg.weight_decay, max_grad_norm=cfg.max_grad_norm,
            optim=args.baseline_optim, bf16=True, gradient_checkpointing=args.checkpointing, logging_steps=1,
            save_strategy="no", report_to="none", seed=args.seed, remove_unused_columns=False,
            dataloader_num_workers=0, disable_tqdm=True, use_cpu=not cuda)
        trainer = InOrder(model=model, args=targs, train_dataset=rows, callbacks=[clock],
                          data_collator=lambda items: pad_batch([it["input_ids"] for it in items], "cpu"))
        trainer.train()
        sync()
    result = {"tokens_per_s": clock.tokens / clock.seconds,
              "peak_gib": torch.cuda.max_memory_allocated() / 2**30 if cuda else 0.0,
              "paged_gib": paged_state_gib(trainer.optimizer),
              "trainable": sum(p.numel() for p in model.parameters() if p.requires_grad), "steps": args.steps,
              "losses": clock.losses, "mixed_precision": trainer.accelerator.mixed_precision, "optim": targs.optim}
    if clock.prof is not None:
        result["profile"] = breakdown(clock.prof, args.profile, cfg.lora.r, args.vocab)
        print_breakdown("baseline", result["profile"], 1000 * clock.seconds / args.steps)
    return result


def firefly(model_dir: Path, kind: str, args) -> dict:
    """firefly-train's own optimizer step (`Trainer.step`) with the 7B seed recipe's config; for `sft`, micro-batches
    of packed rows as `firefly-train sft` trains on."""
    import tempfile
    from functools import partial

    from firefly_train.config import parse_overrides
    from firefly_train.data.collate import packed_collate
    from firefly_train.trainer import Trainer

    def data_fn(cfg, tokenizer):  # cfg.micro_batch_size: --micro-batch unless an override changes it
        n = total_steps(args) * cfg.micro_batch_size * cfg.gradient_accumulation_steps
        if kind == "sft":
            collate = partial(packed_collate, pad_to=cfg.micro_batch_size * args.seq)  # as firefly-train sft
            return packed_sft_rows(args.vocab, args.seq, n), collate, {"files": []}
        seqs = [s for b in batches(kind, args.vocab, args.seq, n, 1) for s in b]
        items = [{"input_ids": s, "labels": s.clone()} for s in seqs]
        return items, lambda b: {k: torch.stack([it[k] for it in b]) for k in ("input_ids", "labels")}, {"files": []}

    with tempfile.TemporaryDirectory() as out:
        cfg = recipe_config(args, model=str(model_dir), output_dir=out, **parse_overrides(args.overrides))
        trainer = Trainer(cfg, "bench", data_fn)
        micro = cfg.micro_batch_size
        trainer.order.indices = lambda k: list(range(k * micro, (k + 1) * micro))
        result = run_steps(trainer.step, trainer.model, args, cfg.lora.r)
        offloaded = trainer.offload.offloaded_bytes / 2**30 if trainer.offload else 0.0
        if offloaded:
            print(f"firefly: {offloaded:.2f} GiB of activations a micro-batch in host memory "
                  f"({trainer.offload.late} tensors asked for before they were back)")
        return result | {"paged_gib": paged_state_gib(trainer.optimizer), "offloaded_gib": offloaded}


def paged_state_gib(optimizer) -> float:
    """GiB of optimizer state in bitsandbytes' paged (CUDA unified) memory, which `max_memory_allocated` does not
    count; on a card with room it lives on the GPU like the rest."""
    inner = getattr(optimizer, "optimizer", optimizer)  # accelerate's wrapper
    return sum(t.numel() * t.element_size() for state in inner.state.values() for t in state.values()
               if torch.is_tensor(t) and getattr(t, "is_paged", False)) / 2**30


def run_steps(step, model, args, rank: int) -> dict:
    """Time `step()` (one optimizer step, returns {"loss" (a device tensor), "tokens"}) after warmup steps; then
    profile `args.profile` more steps (`rank`: the LoRA rank, to tell LoRA matmuls from the base's)."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    cuda = torch.cuda.is_available()
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    tokens, t0, losses = 0, None, []
    for i in range(args.warmup + args.steps):
        if i == args.warmup:
            sync()
            t0, tokens = time.perf_counter(), 0
        r = step()
        tokens += r["tokens"]
        losses.append(r["loss"])
    sync()
    dt = time.perf_counter() - t0
    result = {"tokens_per_s": tokens / dt, "peak_gib": torch.cuda.max_memory_allocated() / 2**30 if cuda else 0.0,
              "trainable": trainable, "steps": args.steps, "losses": [float(x) for x in losses]}
    if args.profile:
        with profiled() as prof:
            for _ in range(args.profile):
                step()
        result["profile"] = breakdown(prof, args.profile, rank, args.vocab)
        print_breakdown("firefly", result["profile"], 1000 * dt / args.steps)
        if args.trace:
            prof.export_chrome_trace(str(args.trace))
    return result


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", type=Path, default=Path("configs/shapes/llama2-7b.json"))
    ap.add_argument("--vocab", type=int, default=55296)
    ap.add_argument("--seq", type=int, default=1024)
    ap.add_argument("--micro-batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--kind", choices=["fixed", "sft"], default="fixed")
    ap.add_argument("--no-checkpointing", dest="checkpointing", action="store_false")
    ap.add_argument("--model-dir", type=Path, default=Path("/tmp/firefly-bench-model"))
    ap.add_argument("--tokenizer", type=Path, help="tokenizer folder with --vocab pieces (firefly path)")
    ap.add_argument("--recipe", type=Path, default=Path("configs/llama2-7b-pretrain-qlora.yaml"))
    ap.add_argument("--which", choices=["both", "baseline", "firefly"], default="both")
    ap.add_argument("--seed", type=int, default=42, help="LoRA init seed of both paths")
    ap.add_argument("--baseline-optim", default="paged_adamw_32bit",
                    help="the baseline's TrainingArguments.optim (paged_adamw_32bit, as Firefly's configs; CUDA only)")
    ap.add_argument("--profile", type=int, default=0, metavar="N",
                    help="then N more steps of each path under torch.profiler: time per op class")
    ap.add_argument("--trace", type=Path, help="with --profile: the firefly path's profiled steps as a Chrome trace")
    ap.add_argument("--json", type=Path, help="also write the numbers here")
    ap.add_argument("overrides", nargs="*", help="after --: firefly-train config overrides (--key value)")
    args = ap.parse_args()
    model_dir = make_random_model(args.shape, args.vocab, args.model_dir)
    rows = {}
    for name, fn in (("baseline", baseline), ("firefly", firefly)):
        if args.which in ("both", name):
            rows[name] = fn(model_dir, args.kind, args)
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
    print(f"\n{'path':<10} {'tokens/s':>10} {'peak GiB':>9} {'+ paged':>8} {'= GiB':>6} {'trainable':>12} "
          f"{'vs baseline':>12}")
    for name, r in rows.items():
        ratio = f"{r['tokens_per_s'] / rows['baseline']['tokens_per_s']:.2f}x" if "baseline" in rows else "-"
        print(f"{name:<10} {r['tokens_per_s']:>10.0f} {r['peak_gib']:>9.1f} {r['paged_gib']:>8.1f} "
              f"{r['peak_gib'] + r['paged_gib']:>6.1f} {r['trainable']:>12,} {ratio:>12}")
    if len(rows) == 2 and args.kind == "sft":
        print("loss curves not compared: a packed firefly step holds more conversations than a baseline step")
    elif len(rows) == 2:  # same data, same weights, same seed: the curves should agree within bf16 noise
        diffs = [abs(a - b) for a, b in zip(rows["baseline"]["losses"], rows["firefly"]["losses"])]
        print(f"loss curves over {len(diffs)} steps: max |firefly - baseline| = {max(diffs):.4f}, "
              f"final {rows['baseline']['losses'][-1]:.4f} vs {rows['firefly']['losses'][-1]:.4f}")
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "rows": rows}, indent=2))


if __name__ == "__main__":
    os.environ.setdefault("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True")
    main()
