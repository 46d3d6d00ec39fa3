"""The README's first command end to end (slow: about 10 minutes on 2 CPU cores at the job's own sizes; the
test uses fewer steps and shorter answers, the same stages).

Runs scripts/main_job.sh into a temporary folder, checks every stage's output is complete, that the console
holds one line per stage (the engines' logs are in OUT/logs) and that the report is built from the outputs,
with bits per character on the held-out text as its headline; then reruns it and checks that every stage is
skipped. A fast test checks that the committed reports/example/ is what the job writes on the current code.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from firefly_train.config import load_config, to_dict
from firefly_train.train_config import PretrainConfig, SftConfig

REPO = Path(__file__).resolve().parent.parent
SEEDS = ("42", "43")
SIZES = {"PRETRAIN_STEPS": "4", "SFT_STEPS": "2", "MAX_NEW_TOKENS": "8", "SEEDS": " ".join(SEEDS)}


def _main_job(out: Path, report: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, FIREFLY_CACHE=os.environ.get("FIREFLY_CACHE", str(REPO / ".cache" / "firefly")), **SIZES)
    return subprocess.run(["bash", "scripts/main_job.sh", "--out", str(out), "--report", str(report)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=1800)


@pytest.mark.slow
def test_main_job_runs_every_stage_then_resumes(tmp_path):
    out, report = tmp_path / "main", tmp_path / "reports" / "REPORT.md"
    first = _main_job(out, report)
    assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-4000:]
    results = out / "results"
    for run in ("pretrain", "sft", "seed-43/pretrain", "seed-43/sft"):
        assert (out / run / "final" / "firefly_checkpoint.json").is_file()
        info = json.loads((out / run / "run_info.json").read_text())
        assert info["command"] == run.rsplit("/", 1)[-1]
    seeds = {json.loads((out / run / "config.yaml").read_text().split("seed: ")[1].split("\n")[0])
             for run in ("pretrain", "seed-43/pretrain")}
    assert seeds == {42, 43}
    for name in ("vocab_stats.json", "cmmlu_base.json", "cmmlu_tuned.json", "leaderboard_base.json",
                 "leaderboard_tuned.json", "bpc_base.json", "bpc_expanded.json", *(f"bpc_{m}_seed{s}.json" for m in ("pretrained", "sft")
                                                              for s in SEEDS)):
        assert json.loads((results / name).read_text())["format"] == 1
    bpc = {p.name: json.loads(p.read_text()) for p in results.glob("bpc_*.json")}
    assert {r["text"]["path"] for r in bpc.values()} == {"samples/heldout_zh.txt"}
    assert len({r["bits_per_char"] for r in bpc.values()}) == 6  # six models, six measurements
    assert bpc["bpc_base.json"]["tokens_per_char"] > bpc["bpc_expanded.json"]["tokens_per_char"]  # the merge
    assert bpc["bpc_expanded.json"]["tokens_per_char"] == bpc["bpc_sft_seed42.json"]["tokens_per_char"]
    n_items = sum(1 for line in (REPO / "eval_sets" / "zh130.jsonl").read_text(encoding="utf-8").splitlines() if line.strip())
    for who in ("base", "tuned"):
        assert len((results / f"answers_{who}.jsonl").read_text(encoding="utf-8").splitlines()) == n_items + 1

    # the console: a line per stage with its time and result; engine output only in the logs
    stage_lines = [line for line in first.stdout.splitlines() if line.startswith("[main ")]
    assert len(stage_lines) == 3 + 2 * 2 + 6 + 6 + 1
    assert all("s: " in line for line in stage_lines)
    assert "INFO" not in first.stdout and "Loading weights" not in first.stdout and not first.stderr.strip()
    logs = sorted(p.name for p in (out / "logs").iterdir())
    assert {"cmmlu-base.log", "leaderboard-tuned.log", "pretrain-seed-43.log", "bpc-sft-seed-43.log"} <= set(logs)
    assert "opencompass" in (out / "logs" / "cmmlu-base.log").read_text().lower()

    md = report.read_text(encoding="utf-8")
    for section in ("## Held-out text: bits per character", "## Training", "## Tokenizer efficiency", "## CMMLU",
                    "## Open LLM Leaderboard tasks"):
        assert section in md
    head = md.split("## Held-out text")[0]
    assert "Bits per character on `samples/heldout_zh.txt`" in head and "in none of the training files given" in head
    assert "spread over 2 seeds" in head and "CMMLU average" not in head
    for fig in ("bpc", "loss", "benchmarks"):
        assert (report.parent / f"REPORT-{fig}.png").is_file()
    assert f"Report: {report}" in first.stdout and "firefly-judge serve" in first.stdout

    second = _main_job(out, report)
    assert second.returncode == 0, second.stderr[-4000:]
    ran = [line for line in second.stdout.splitlines() if line.startswith("[main") and "skipped" not in line]
    assert len(ran) == 1 and ran[0].startswith("[main 8/8] report")  # all else skipped
    assert second.stdout.count(" skipped (complete): ") == 3 + 2 * 2 + 6 + 6


@pytest.mark.slow
def test_a_failing_stage_prints_its_log_tail_and_stops(tmp_path):
    env = dict(os.environ, FIREFLY_CACHE=os.environ.get("FIREFLY_CACHE", str(REPO / ".cache" / "firefly")),
               VOCAB_SIZE="5")
    done = subprocess.run(["bash", "scripts/main_job.sh", "--out", str(tmp_path / "main"), "--report",
                           str(tmp_path / "R.md")], cwd=REPO, env=env, capture_output=True, text=True, timeout=1800)
    log = tmp_path / "main" / "logs" / "vocab-train.log"
    assert done.returncode == 1 and log.is_file()
    assert "[main 1/8] vocab train" in done.stderr and "FAILED after" in done.stderr
    assert "--vocab-size must be at least 10, got 5" in done.stderr and f"(full log: {log})" in done.stderr
    assert "[main 2/8]" not in done.stdout and not (tmp_path / "R.md").exists()


def _script_default(name: str) -> str:
    """A size's default in scripts/main_job.sh (`NAME=${NAME:-value}`)."""
    m = re.search(rf'^{name}=\$\{{{name}:-"?([^"}}]*)"?\}}$', (REPO / "scripts" / "main_job.sh").read_text(), re.M)
    assert m, name
    return m.group(1)


def test_the_committed_example_is_what_the_main_job_writes_now():
    """reports/example/ is `bash scripts/main_job.sh --out runs/example --report reports/example/REPORT.md`: every
    training run's resolved config in it is the one the current code resolves from configs/main_job/ and the
    script's sizes, and its other sizes are the script's. When this fails, rerun that command (about 10 minutes)
    and commit reports/example/."""
    md = (REPO / "reports" / "example" / "REPORT.md").read_text(encoding="utf-8")
    assert "-o reports/example/REPORT.md" in md
    runs = re.findall(r"^### Training run `(\w+) seed (\d+)` \(`([^`]+)`\).*?^```yaml\n(.*?)^```", md, re.M | re.S)
    seeds = _script_default("SEEDS").split()
    assert sorted((kind, seed) for kind, seed, _, _ in runs) == sorted(
        (kind, seed) for kind in ("pretrain", "sft") for seed in seeds)
    for kind, seed, out, written in runs:
        prefix = "runs/example" if seed == seeds[0] else f"runs/example/seed-{seed}"
        assert out == f"{prefix}/{kind}"
        if kind == "pretrain":
            cls, extra = PretrainConfig, ["--tokenizer", "runs/example/vocab/smollm2-135m-zh"]
        else:
            cls, extra = SftConfig, ["--model", f"{prefix}/pretrain"]
        steps = _script_default("PRETRAIN_STEPS" if kind == "pretrain" else "SFT_STEPS")
        now = load_config(cls, REPO / "configs" / "main_job" / f"{kind}.yaml",
                          [*extra, "--max_steps", steps, "--seed", seed, "--output_dir", out])
        assert yaml.safe_load(written) == to_dict(now), f"{kind} seed {seed}: the example's config is stale"
    assert f"max_new_tokens={_script_default('MAX_NEW_TOKENS')}," in md
    for limit, data in (("CMMLU_LIMIT", "cmmlu"), ("LEADERBOARD_LIMIT", "english")):
        assert f"`--limit {_script_default(limit)}` questions per subject/task on firefly_eval/minisets/{data}" in md
