"""Where the prefix-cached CMMLU scores part from OpenCompass's own: one model, the same 5-shot prompts, four ways.

    python bench/cmmlu_prefix_agreement.py --model-dir /tmp/l7 --data-dir DATA/cmmlu --json agreement.json

Rows (each scores every question's four prompts `...答案是: A..D`, label by label in batches, as OpenCompass's
PPL inferencer calls `get_ppl`):
- `opencompass, batch B`: `FireflyCausalLM.get_ppl` without the prefix cache, i.e. OpenCompass's
  `HuggingFaceBaseModel.get_ppl` (right-padded full prompts), at `--batch-sizes`; the first is the reference
  and the second its own noise floor;
- `ours, prefix with the causal kernel`: `PrefixCachedPPL` as it was until 2026-12-02 (the prefix alone,
  no mask: SDPA's causal-only kernel);
- `ours, prefix with an explicit mask`: `PrefixCachedPPL` as it is (the prefix through SDPA's masked kernel,
  like the stems and like OpenCompass's padded batches).
Each row prints its agreement with the reference: identical predictions, the largest relative perplexity
difference, and the reference's own margin on every question where the prediction differs. The prompts
follow OpenCompass's CMMLU PPL template in shape (a 5-shot block from dev/, then the question); the
comparison needs the same tokens in each path, not the exact template.
"""
from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import numpy as np
import torch

HEAD = "以下是关于{subject}的单项选择题，请直接给出正确答案的选项。\n\n"


def _block(row: dict, answer: str) -> str:
    return (f"题目：{row['Question']}\nA. {row['A']}\nB. {row['B']}\nC. {row['C']}\nD. {row['D']}\n"
            f"答案是: {answer}")


def prompts(data_dir: Path, subject: str, limit: int | None) -> list[list[str]]:
    """Per question, its four prompts (labels A-D)."""
    def rows(split):
        with open(data_dir / split / f"{subject}.csv", encoding="utf-8") as f:
            return list(csv.DictReader(f))

    shots = "\n\n".join(_block(r, r["Answer"]) for r in rows("dev")[:5])
    prefix = HEAD.format(subject=subject) + shots + "\n\n"
    return [[prefix + _block(r, label) for label in "ABCD"] for r in rows("test")[:limit]]


@torch.no_grad()  # as OpenCompass's inferencer calls get_ppl
def score(get_ppl, questions: list[list[str]], batch_size: int) -> np.ndarray:
    """[questions, 4] perplexities, label by label in batches (OpenCompass's inferencer order)."""
    out = np.zeros((len(questions), 4))
    for k in range(4):
        for start in range(0, len(questions), batch_size):
            out[start:start + batch_size, k] = get_ppl([q[k] for q in questions[start:start + batch_size]])
    return out


def agreement(ref: np.ndarray, ours: np.ndarray) -> dict:
    pr, po = ref.argmin(1), ours.argmin(1)
    diff = np.nonzero(pr != po)[0]
    return {"identical": int((pr == po).sum()), "questions": len(pr),
            "max_relative_ppl_difference": float(np.max(np.abs(ours - ref) / np.abs(ref))),
            "differences": [{"question": int(i), "reference": "ABCD"[pr[i]], "ours": "ABCD"[po[i]],
                             "reference_margin": float(ref[i, po[i]] - ref[i, pr[i]])} for i in diff]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-dir", required=True)
    ap.add_argument("--data-dir", type=Path, required=True, help="CMMLU folder (dev/, test/)")
    ap.add_argument("--subjects", nargs="+", default=["agronomy", "anatomy", "ancient_chinese"])
    ap.add_argument("--limit", type=int, default=None, help="questions per subject")
    ap.add_argument("--batch-sizes", type=int, nargs=2, default=[16, 32], help="the reference's, then its noise floor's")
    ap.add_argument("--dtype", choices=("bfloat16", "float32"), default=None, help="default: bf16 on a GPU")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    from firefly_eval.opencompass_model import FireflyCausalLM
    from firefly_eval.prefix_ppl import PrefixCachedPPL

    class CausalKernelPrefix(PrefixCachedPPL):
        def _prefix_attention_mask(self, n):
            return None

    lm = FireflyCausalLM(args.model_dir, max_seq_len=4096, prefix_cache=True, dtype=args.dtype)
    questions = [q for s in args.subjects for q in prompts(args.data_dir, s, args.limit)]
    pad = lm.tokenizer.pad_token_id
    paths = {f"opencompass, batch {b}": (None, b) for b in args.batch_sizes}
    paths["ours, prefix with the causal kernel"] = (CausalKernelPrefix(lm.model, pad), args.batch_sizes[0])
    paths["ours, prefix with an explicit mask"] = (PrefixCachedPPL(lm.model, pad), args.batch_sizes[0])
    results, rows = {}, {}
    for name, (prefix_ppl, batch) in paths.items():
        lm.prefix_ppl = prefix_ppl
        lm._token_ids.clear()
        t0 = time.perf_counter()
        results[name] = score(lm.get_ppl, questions, batch)
        rows[name] = {"seconds": time.perf_counter() - t0}
    reference = next(iter(results.values()))
    print(f"{len(questions)} questions ({', '.join(args.subjects)}), {lm.model.dtype} on {lm.model.device}\n")
    print(f"{'path':<40}{'seconds':>9}{'identical':>11}{'max rel. PPL diff':>19}")
    for name, ppl in results.items():
        rows[name].update(agreement(reference, ppl))
        r = rows[name]
        print(f"{name:<40}{r['seconds']:>9.1f}{r['identical']:>7}/{r['questions']:<4}"
              f"{r['max_relative_ppl_difference']:>18.2e}")
        for d in r["differences"]:
            print(f"    question {d['question']}: {d['reference']} vs {d['ours']}, reference margin "
                  f"{d['reference_margin']:.3g}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                         "dtype": str(lm.model.dtype), "rows": rows}, indent=2))


if __name__ == "__main__":
    torch.backends.cuda.matmul.allow_tf32 = False
    main()
