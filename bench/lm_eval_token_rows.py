"""How much forward-pass work each engine does on real lm-eval requests, counted in token rows (CPU only).

    python bench/lm_eval_token_rows.py --tokenizer ../shared/data/tokenizers/chinese-llama2 \
        --data-dir ../shared/data/english --tasks ff_hellaswag:1000 ff_arc_challenge ff_truthfulqa_mc2 ff_mmlu_anatomy

A forward pass's linear layers, nearly all of a 7B's work, cost in proportion to the token rows they run,
padding and dummy rows included. Stock HFLM (batch 64) runs one row per request, context + continuation minus
its last token, lm-eval merging requests whose rows are the same (MMLU's one-token choices), longest first,
each batch padded to its longest row. FireflyLM's passes are counted as it builds them (`FireflyLM._padded`),
batched as for `--shape` on a GPU with `--free-gb` free (`memory_budget`) and the GPU's row floor. A
two-layer random model with the tokenizer's vocabulary runs the passes, so only the counts mean anything: the
table is a prediction of the GPU speed-up, to be set beside the measured one (`eval_throughput.py leaderboard`).
"""
from __future__ import annotations

import argparse
import json
import tempfile
import types
from pathlib import Path
from unittest import mock

TINY = {"model_type": "llama", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 4, "max_position_embeddings": 4096}


def stock_rows(requests, batch: int = 64) -> int:
    rows = sorted({tuple(ctx + cont[:-1]) for _, ctx, cont in requests}, key=len, reverse=True)
    return sum(len(rows[k]) * len(rows[k:k + batch]) for k in range(0, len(rows), batch))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokenizer", type=Path, required=True)
    ap.add_argument("--data-dir", type=Path, required=True, help="the leaderboard data (`firefly-eval leaderboard`)")
    ap.add_argument("--tasks", nargs="+", required=True, metavar="TASK[:DOCS]",
                    help="lm-eval task names of firefly_eval/tasks, each with its first DOCS documents or all")
    ap.add_argument("--shape", type=Path, default=Path("configs/shapes/llama2-7b.json"))
    ap.add_argument("--free-gb", type=float, default=127.0, help="free GPU memory after loading the model")
    ap.add_argument("--min-pass-tokens", type=int, help="token rows a pass at least (default: a GPU's floor)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    import torch
    from lm_eval.tasks import TaskManager, get_task_dict
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from firefly_eval import leaderboard
    from firefly_eval.lm_eval_model import GPU_MEMORY_SHARE, MIN_PASS_TOKENS, FireflyLM, position_bytes

    tok = AutoTokenizer.from_pretrained(args.tokenizer)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(AutoConfig.for_model(**TINY, vocab_size=len(tok)))
    shape = AutoConfig.for_model(**json.loads(args.shape.read_text()))
    floor = MIN_PASS_TOKENS if args.min_pass_tokens is None else args.min_pass_tokens
    lm = FireflyLM(pretrained=model, tokenizer=tok, batch_size="auto",
                   max_batch_bytes=int(args.free_gb * 1e9 * GPU_MEMORY_SHARE), min_pass_tokens=floor)
    lm._position_bytes = position_bytes(types.SimpleNamespace(config=shape, dtype=torch.bfloat16))
    manager = TaskManager(include_path=str(leaderboard.render_tasks(args.data_dir.resolve(),
                                                                     Path(tempfile.mkdtemp()) / "tasks")),
                          include_defaults=False)
    table = {}
    for spec in args.tasks:
        name, _, docs = spec.partition(":")
        task = get_task_dict([name], manager)[name]
        task.set_fewshot_seed(seed=1234)  # simple_evaluate's default: its few-shot draws
        task.build_all_requests(samples=list(range(int(docs))) if docs else None)
        tokenized, counts, kind = [], {"contexts": 0, "continuations": 0}, ["contexts"]
        real_padded, real_score, real_tokens = FireflyLM._padded, FireflyLM._score, FireflyLM._loglikelihood_tokens
        real_prefix_pool = FireflyLM._prefix_pool

        def padded(self, rows):  # a batch's first pass (and a shared prefix's) is contexts, the others continuations
            out = real_padded(self, rows)
            counts[kind[0]] += out.numel()
            kind[0] = "continuations"
            return out

        def score(self, batch, requests, pool):
            kind[0] = "contexts"
            yield from real_score(self, batch, requests, pool)

        def prefix_pool(self, prefix):
            kind[0] = "contexts"
            return real_prefix_pool(self, prefix)

        def loglikelihood_tokens(self, requests, disable_tqdm=False, override_bs=None):
            tokenized.extend(requests)
            return real_tokens(self, requests, disable_tqdm, override_bs)

        with mock.patch.object(FireflyLM, "_padded", padded), mock.patch.object(FireflyLM, "_score", score), \
                mock.patch.object(FireflyLM, "_prefix_pool", prefix_pool), \
                mock.patch.object(FireflyLM, "_loglikelihood_tokens", loglikelihood_tokens):
            lm.loglikelihood(task.instances, disable_tqdm=True)
        stock = stock_rows(tokenized)
        ours = counts["contexts"] + counts["continuations"]
        table[spec] = {"requests": len(tokenized), "stock_token_rows": stock, "ours_context_rows": counts["contexts"],
                       "ours_continuation_rows": counts["continuations"], "ratio": stock / ours}
    print(f"{'task':<32}{'requests':>9}{'stock rows':>12}{'ours: contexts':>16}{'continuations':>15}{'stock/ours':>12}")
    for spec, r in table.items():
        print(f"{spec:<32}{r['requests']:>9}{r['stock_token_rows']:>12}{r['ours_context_rows']:>16}"
              f"{r['ours_continuation_rows']:>15}{r['ratio']:>12.2f}")
    print(f"as {args.shape.name} (bf16) would batch with {args.free_gb:g} GB free, {floor} token rows a pass at "
          "least; the prefix passes of shared-prefix groups are counted with the contexts")
    if args.json:
        args.json.write_text(json.dumps({"tasks": table, "shape": str(args.shape), "free_gb": args.free_gb,
                                         "min_pass_tokens": floor}, indent=1))


if __name__ == "__main__":
    main()
