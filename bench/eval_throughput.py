"""Evaluation throughput: each engine's own default path against firefly-eval's, same GPU, same model, one run.

    python bench/eval_throughput.py cmmlu       --model-dir /tmp/l7 --data-dir DATA/cmmlu   --json cmmlu.json
    python bench/eval_throughput.py leaderboard --model-dir /tmp/l7 --data-dir DATA/english --json lb.json
    python bench/eval_throughput.py generate    --model-dir /tmp/l7 --json gen.json

Each stage lives in `bench/eval_stages/<stage>.py` (`add_arguments(parser)`, `run(args) -> dict`): it runs the
reference (the engine's own default path) and ours on the same model and data, prints a table of time,
tokens/s and whether the outputs are identical, and returns the numbers for `--json`. `--model-dir` is made
as a random-init model of `--shape` with `--vocab` pieces (bench/train_throughput.py's `make_random_model`)
when it does not exist, with the `--tokenizer` folder saved beside the weights.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import shutil
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(BENCH.parent))
STAGES = ("cmmlu", "leaderboard", "generate")


def model_folder(args) -> Path:
    """A random-init model of `--shape` with the `--tokenizer` files beside it (a plain HF folder)."""
    from train_throughput import make_random_model

    out = make_random_model(args.shape, args.vocab, args.model_dir)
    if args.tokenizer and not (out / "tokenizer_config.json").is_file():
        for f in Path(args.tokenizer).iterdir():
            if f.is_file():
                shutil.copy(f, out / f.name)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("stage", choices=STAGES)
    stage_name = ap.parse_known_args()[0].stage
    stage = importlib.import_module(f"eval_stages.{stage_name}")  # only the stage asked for is imported
    ap.add_argument("--shape", type=Path, default=Path("configs/shapes/llama2-7b.json"))
    ap.add_argument("--vocab", type=int, default=55296)
    ap.add_argument("--model-dir", type=Path, default=Path("/tmp/firefly-bench-model"))
    ap.add_argument("--tokenizer", type=Path, help="tokenizer folder copied into a new --model-dir")
    ap.add_argument("--json", type=Path, help="also write the numbers here")
    stage.add_arguments(ap)
    args = ap.parse_args()
    args.model_dir = model_folder(args)
    result = stage.run(args)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, **result}, indent=2))


if __name__ == "__main__":
    os.environ.setdefault("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True")
    main()
