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


def _shard(subjects, questions, identical, max_rel, differences):
    agreement = {"questions": questions, "identical": identical, "identical_share": identical / questions,
                 "max_relative_ppl_difference": max_rel, "differences": differences}
    return {"subjects": subjects, "rows": {}, "agreement": {"opencompass (batch default)": agreement}}


def test_cmmlu_shards_add_up_the_agreement(tmp_path):
    """bench/cmmlu_shards.py sums the shards' counts, keeps every difference and the largest PPL difference, names
    the subjects still to run, and refuses a subject measured twice."""
    diff = {"subject": "cmmlu-nutrition", "index": "3", "reference": "B", "ours": "C", "reference_margin": 0.01,
            "ppl_reference": {}, "ppl_ours": {}}
    first, second, total = tmp_path / "a.json", tmp_path / "b.json", tmp_path / "total.json"
    first.write_text(json.dumps(_shard(["economics"], 8, 8, 1e-7, [])))
    second.write_text(json.dumps(_shard(["nutrition"], 8, 7, 3e-7, [diff])))
    out = subprocess.run([sys.executable, "bench/cmmlu_shards.py", str(first), str(second), "--data-dir",
                          "firefly_eval/minisets/cmmlu", "--json", str(total)], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(total.read_text())
    assert result["subjects"] == ["economics", "nutrition"]
    assert result["agreement"]["opencompass (batch default)"] == {
        "questions": 16, "identical": 15, "identical_share": 15 / 16, "max_relative_ppl_difference": 3e-7,
        "differences": [diff]}
    assert "economics" not in result["missing_subjects"] and result["missing_subjects"]
    assert "predictions identical on 15 of 16 questions (93.75 %)" in out.stdout
    assert "cmmlu-nutrition #3: B vs C, reference margin 0.01" in out.stdout
    again = subprocess.run([sys.executable, "bench/cmmlu_shards.py", str(first), str(first)], cwd=REPO,
                           capture_output=True, text=True)
    assert again.returncode != 0 and "subject 'economics' is in" in again.stderr
