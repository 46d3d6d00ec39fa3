"""A run killed with SIGKILL and resumed logs exactly the losses of an uninterrupted run."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from firefly_train.cli import main

REPO = Path(__file__).resolve().parents[2]
TIMING = ("tokens_per_s", "elapsed_s")


def _args(model, out):
    return ["pretrain", "--model", str(model), "--data", str(REPO / "samples" / "pretrain_zh.jsonl"),
            "-o", str(out), "--mode", "lora", "--lora.r", "4", "--lora.dropout", "0.1", "--max_seq_length", "32",
            "--micro_batch_size", "2", "--gradient_accumulation_steps", "2", "--max_steps", "24",
            "--save_steps", "2", "--save_total_limit", "2", "--learning_rate", "5e-3", "--warmup_steps", "3",
            "--precision", "fp32", "--gradient_checkpointing", "false", "--num_proc", "1"]


def _losses(run):
    rows = [json.loads(line) for line in (run / "loss.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in TIMING} for r in rows]


def _subprocess(args):
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, "-m", "firefly_train.cli", *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_sigkill_then_resume_matches_uninterrupted(tiny_llama, tmp_path):
    killed = tmp_path / "killed"
    proc = _subprocess(_args(tiny_llama, killed))
    ckpt = killed / "checkpoints" / "step-000004" / "firefly_checkpoint.json"
    deadline = time.time() + 120
    while not ckpt.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert ckpt.exists() and not (killed / "final").exists(), "the run must be killed mid-way"
    # a checkpoint whose write was cut short (no firefly_checkpoint.json) must never be loaded
    broken = killed / "checkpoints" / "step-000099"
    broken.mkdir()
    (broken / "trainer_state.pt").write_bytes(b"torn")

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(_args(tiny_llama, tmp_path / "straight")) == 0
    finally:
        torch.set_num_threads(threads)

    resumed = _subprocess(_args(tiny_llama, killed))
    _, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err[-2000:]
    step = int(err.split("resuming from ")[1].split("(step ")[1].split(")")[0])
    assert step >= 4 and "step-000099" not in err
    straight = _losses(tmp_path / "straight")
    assert len(straight) == 24
    assert _losses(killed) == straight
    ck = json.loads((killed / "final" / "firefly_checkpoint.json").read_text())
    assert ck["step"] == 24 and ck["mode"] == "lora"
    assert sorted(p.name for p in (killed / "checkpoints").glob("step-*")) == ["step-000022", "step-000024",
                                                                              "step-000099"]
