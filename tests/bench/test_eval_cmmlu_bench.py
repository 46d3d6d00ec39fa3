"""The CMMLU stage of bench/eval_throughput.py runs end to end on a tiny model on the CPU (no timing asserted)."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_cmmlu_stage_compares_both_engines_question_by_question(tiny_llama, tmp_path):
    report = tmp_path / "cmmlu.json"
    out = subprocess.run([sys.executable, "bench/eval_throughput.py", "cmmlu", "--model-dir", str(tiny_llama),
                          "--data-dir", "firefly_eval/minisets/cmmlu", "--reference-subjects", "economics",
                          "nutrition", "--reference-batch-sizes", "2", "3", "--full", "--out", str(tmp_path / "work"), "--json", str(report)],
                         cwd=REPO, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    result = json.loads(report.read_text())
    assert set(result["agreement"]) == {"opencompass (batch 2)", "opencompass (batch 3)",
                                        "opencompass (batch 2) vs opencompass (batch 3)"}
    for agreement in result["agreement"].values():  # float32 on the CPU: no noise to flip an answer
        assert agreement["questions"] == 16 and agreement["identical"] == 16 and not agreement["differences"]
        assert agreement["max_relative_ppl_difference"] < 1e-5
    assert result["rows"]["firefly (full set)"]["questions"] == 40
    assert "opencompass (batch 2) vs firefly: predictions identical on 16 of 16 questions" in out.stdout
