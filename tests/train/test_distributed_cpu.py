"""The same command under torchrun: two CPU processes (DDP over gloo) train exactly like one process.

With LoRA dropout off and fixed-length blocks, two processes with micro-batch 2 see the same examples per
optimizer step as one process with micro-batch 4 (each takes its slice of the global micro-batch), and the
all-reduced gradient is the same mean, so the logged losses match.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _train(tiny_llama, out: Path, nproc: int, micro: int) -> list[dict]:
    args = ["-m", "firefly_train.cli", "pretrain", "--model", str(tiny_llama),
            "--data", str(REPO / "samples" / "pretrain_zh.jsonl"), "-o", str(out), "--mode", "lora",
            "--lora.r", "8", "--lora.dropout", "0", "--max_seq_length", "64", "--micro_batch_size", str(micro),
            "--max_steps", "4", "--save_steps", "2", "--precision", "fp32", "--num_proc", "1",
            "--learning_rate", "1e-2", "--lr_scheduler", "constant"]
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc),
                "--standalone"] if nproc > 1 else [sys.executable]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(launcher + args, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [json.loads(line) for line in (out / "loss.jsonl").read_text().splitlines()]


def test_torchrun_two_processes_match_one(tiny_llama, tmp_path):
    one = _train(tiny_llama, tmp_path / "one", nproc=1, micro=4)
    two = _train(tiny_llama, tmp_path / "two", nproc=2, micro=2)
    assert [r["step"] for r in two] == [1, 2, 3, 4]
    assert [r["tokens"] for r in two] == [r["tokens"] for r in one]  # 4 blocks of 64 per step in both
    for a, b in zip(one, two):
        assert abs(a["loss"] - b["loss"]) < 1e-4, (a, b)
    info = json.loads((tmp_path / "two" / "run_info.json").read_text())
    assert info["steps"] == 4 and info["hardware"]["device"] == "cpu"
    # one checkpoint per save, written by the main process only; both resumable
    assert sorted(p.name for p in (tmp_path / "two" / "checkpoints").iterdir()) == ["step-000002", "step-000004"]
