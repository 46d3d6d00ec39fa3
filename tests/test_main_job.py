"""The README's first command end to end (slow: about 10 minutes on 2 CPU cores).

Runs scripts/main_job.sh into a temporary folder, checks every stage's output is complete and that the
report is built from them, then reruns it and checks that every stage is skipped.
"""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def _main_job(out: Path, report: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, FIREFLY_CACHE=os.environ.get("FIREFLY_CACHE", str(REPO / ".cache" / "firefly")))
    return subprocess.run(["bash", "scripts/main_job.sh", "--out", str(out), "--report", str(report)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=1800)


@pytest.mark.slow
def test_main_job_runs_every_stage_then_resumes(tmp_path):
    out, report = tmp_path / "main", tmp_path / "reports" / "REPORT.md"
    first = _main_job(out, report)
    assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-4000:]
    results = out / "results"
    for run in ("pretrain", "sft"):
        assert (out / run / "final" / "firefly_checkpoint.json").is_file()
        assert json.loads((out / run / "run_info.json").read_text())["command"] == run
    for name in ("vocab_stats.json", "cmmlu_base.json", "cmmlu_tuned.json", "leaderboard_base.json",
                 "leaderboard_tuned.json"):
        assert json.loads((results / name).read_text())["format"] == 1
    n_items = sum(1 for line in (REPO / "eval_sets" / "zh130.jsonl").read_text(encoding="utf-8").splitlines() if line.strip())
    for who in ("base", "tuned"):
        assert len((results / f"answers_{who}.jsonl").read_text(encoding="utf-8").splitlines()) == n_items + 1
    md = report.read_text(encoding="utf-8")
    for section in ("## Training", "## Tokenizer efficiency", "## CMMLU", "## Open LLM Leaderboard tasks"):
        assert section in md
    assert (report.parent / "REPORT-loss.png").is_file() and (report.parent / "REPORT-benchmarks.png").is_file()
    assert f"Report: {report}" in first.stdout and "firefly-judge serve" in first.stdout

    second = _main_job(out, report)
    assert second.returncode == 0, second.stderr[-4000:]
    running = [line for line in second.stdout.splitlines() if line.startswith("[main") and ": running" in line]
    assert len(running) == 1 and running[0].startswith("[main 7/7] report: running")  # all else skipped
    assert second.stdout.count(": complete, skipped") == 11
