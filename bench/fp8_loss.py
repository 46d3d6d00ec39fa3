"""Does a QLoRA run learn the same with the frozen base's forward products in FP8 (`fp8_base_products`)?

A real model learning real text, not a random-init loss that stays near log(vocabulary): the embedded SmolLM2-135M
trained by `firefly-train pretrain` (QLoRA, compiled layers) on the user's Chinese text, three ways from the same
weights, data and seed: fp32 (the reference), bf16 (what a GPU run computes in), and bf16 with FP8 forward products.
FP8 passes where its distance from the bf16 curve is no larger than bf16's own distance from fp32: within bf16's
noise. Each run is its own process.

On a CPU `torch._scaled_mm` falls back to oneDNN's reference kernel (minutes a product), so there the FP8 run
emulates it: both operands rounded to e4m3 with `nf4_linear.to_fp8`'s scales exactly as on the GPU, then multiplied
in float32. e4m3 x e4m3 products are exact in float32, so this differs from the GPU's product only in the order of
the float32 sums. On an FP8 GPU the real kernel runs.

    python bench/fp8_loss.py --data ../shared/data/corpus/cnews.val.subset.txt            # 9 min on 2 cores
    python bench/fp8_loss.py --data FILE --steps 20 --seq 128                             # quicker
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def ways(scaling: str) -> dict[str, list[str]]:
    """Each run's name and its firefly-train overrides."""
    return {"fp32": ["--precision", "fp32"], "bf16": ["--precision", "bf16"],
            f"bf16 + fp8 {scaling}": ["--precision", "bf16", "--fp8_base_products", scaling]}


def emulated_scaled_mm(rows, row_scale, weight, weight_scale, out_dtype):
    """`nf4_linear.scaled_mm` as the float32 product of the e4m3 operands, for a CPU."""
    return ((rows.float() @ weight.float().t()) * row_scale * weight_scale.t()).to(out_dtype)


def run_one(args) -> None:
    """One way, in this process: firefly-train pretrain with its overrides, the FP8 product emulated off a GPU."""
    import torch

    from firefly_train import cli, nf4_linear

    if not torch.cuda.is_available():
        nf4_linear.scaled_mm = emulated_scaled_mm
    argv = ["pretrain", "--config", str(ROOT / "configs/main_job/pretrain.yaml"), "--data", args.data,
            "--train_embeddings", "false", "--compile_layers", "true", "--max_seq_length", str(args.seq),
            "--micro_batch_size", str(args.micro_batch), "--max_steps", str(args.steps),
            "--learning_rate", str(args.lr), "--warmup_steps", "2", "--save_steps", str(args.steps + 1),
            "-o", str(run_dir(args.out, args.one)), *ways(args.scaling)[args.one]]
    sys.exit(cli.main(argv))


def run_dir(out: str, way: str) -> Path:
    return Path(out) / way.replace(" + ", "-").replace(" ", "-")


def losses(run: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (run / "loss.jsonl").read_text().splitlines() if line.strip()]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="training text (e.g. the CNews sample of ../shared/data/corpus)")
    p.add_argument("--out", default="runs/bench-fp8-loss", help="folder for the three runs")
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--seq", type=int, default=256)
    p.add_argument("--micro-batch", type=int, default=4)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--scaling", choices=["tensorwise", "rowwise"], default="tensorwise",
                   help="fp8_base_products of the FP8 run")
    p.add_argument("--json", help="write the curves and the comparison here")
    p.add_argument("--one", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.one:
        return run_one(args)

    curves = {}
    for way in ways(args.scaling):
        run = run_dir(args.out, way)
        if not (run / "run_info.json").is_file() or len(losses(run)) < args.steps:
            subprocess.run([sys.executable, __file__, "--one", way, *sys.argv[1:]], check=True, cwd=ROOT)
        curves[way] = losses(run)
    fp8 = f"bf16 + fp8 {args.scaling}"

    def distance(a, b):
        d = [abs(x - y) for x, y in zip(curves[a], curves[b])]
        return max(d), sum(d) / len(d)

    print(f"\n{args.steps} steps of {args.micro_batch} x {args.seq} tokens, {args.data}; FP8 {args.scaling}")
    print(f"{'way':22} {'first 5':>8} {'last 10':>8}")
    for way, c in curves.items():
        print(f"{way:22} {sum(c[:5]) / len(c[:5]):8.4f} {sum(c[-10:]) / len(c[-10:]):8.4f}")
    pairs = {"bf16 vs fp32": ("bf16", "fp32"), "bf16 + fp8 vs bf16": (fp8, "bf16"), "bf16 + fp8 vs fp32": (fp8, "fp32")}
    print(f"\n{'pair':20} {'max |d|':>8} {'mean |d|':>9}")
    table = {}
    for name, (a, b) in pairs.items():
        table[name] = dict(zip(("max", "mean"), distance(a, b)))
        print(f"{name:20} {table[name]['max']:8.4f} {table[name]['mean']:9.4f}")
    within = table["bf16 + fp8 vs bf16"]["mean"] <= table["bf16 vs fp32"]["mean"]
    print(f"\nFP8 within bf16's noise (mean |fp8 - bf16| <= mean |bf16 - fp32|): {within}")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "curves": curves, "pairs": table,
                                               "within_bf16_noise": within}, indent=1))


if __name__ == "__main__":
    main()
