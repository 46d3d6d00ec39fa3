"""The GPU diagnostics run end to end on a tiny model on the CPU, where float32 makes every variant agree (the
property they look for on a GPU, where bf16 kernels may break it)."""
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _run(*args) -> str:
    out = subprocess.run([sys.executable, *map(str, args)], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def test_cmmlu_prefix_agreement_on_cpu(tiny_llama, tmp_path):
    report = tmp_path / "agreement.json"
    out = _run("bench/cmmlu_prefix_agreement.py", "--model-dir", tiny_llama, "--data-dir",
               REPO / "firefly_eval" / "minisets" / "cmmlu", "--subjects", "economics", "--limit", 3,
               "--batch-sizes", 2, 3, "--json", report)
    assert "3 questions (economics), torch.float32 on cpu" in out
    rows = json.loads(report.read_text())["rows"]
    assert list(rows) == ["opencompass, batch 2", "opencompass, batch 3", "ours, prefix with the causal kernel",
                          "ours, prefix with an explicit mask"]
    for name, r in rows.items():
        assert (r["identical"], r["questions"], r["differences"]) == (3, 3, []), name
        assert r["max_relative_ppl_difference"] < 1e-5, name


def test_generate_row_order_on_cpu(tiny_llama, tmp_path):
    report = tmp_path / "row_order.json"
    _run("bench/generate_row_order.py", "--model-dir", tiny_llama, "--items", 4, "--steps", 3, "--json", report)
    checks = json.loads(report.read_text())["checks"]
    assert set(checks) == {"prefill logits (plain forward)", "sampler alone on identical logits",
                           "greedy, eager, 3 steps", "sampled, eager, 3 steps"}
    assert all(c["identical"] == c["items"] == 4 for c in checks.values())
    assert checks["prefill logits (plain forward)"]["max_abs_logit_difference"] == 0
    _run("bench/generate_row_order.py", "--model-dir", tiny_llama, "--items", 4, "--steps", 3, "--settings",
         "default", "sdpa-math", "matmul-step", "--json", report)
    checks = json.loads(report.read_text())["checks"]
    assert set(checks) == {f"[{s}] {what}" for s in ("default", "sdpa-math", "matmul-step")
                           for what in ("decoding step logits", "greedy, eager, 3 steps")}
    assert all(c["identical"] == c["items"] == 4 for c in checks.values())
    _run("bench/generate_row_order.py", "--model-dir", tiny_llama, "--items", 4, "--steps", 3, "--repeat",
         "--json", report)  # the same order twice: a CPU repeats itself exactly
    checks = json.loads(report.read_text())["checks"]
    assert all(c["identical"] == c["items"] == 4 for c in checks.values()) and len(checks) == 4
    assert checks["prefill logits (plain forward)"]["max_abs_logit_difference"] == 0


def test_lm_eval_token_rows_on_cpu(tiny_llama, tmp_path):
    """The work count runs on the smoke sets: each task's stock rows and ours; MMLU's one-token choices need no
    continuation rows (stock merges them too); without the GPU's row floor (it dominates a few questions) ours
    compute fewer token rows than stock where choices share a context."""
    report = tmp_path / "rows.json"
    out = _run("bench/lm_eval_token_rows.py", "--tokenizer", tiny_llama, "--data-dir",
               REPO / "firefly_eval" / "minisets" / "english", "--tasks", "ff_arc_challenge:3", "ff_truthfulqa_mc2",
               "ff_mmlu_high_school_geography", "--min-pass-tokens", 0, "--json", report)
    assert "stock/ours" in out
    rows = json.loads(report.read_text())["tasks"]
    assert list(rows) == ["ff_arc_challenge:3", "ff_truthfulqa_mc2", "ff_mmlu_high_school_geography"]
    assert rows["ff_arc_challenge:3"]["requests"] == 12
    assert rows["ff_mmlu_high_school_geography"]["ours_continuation_rows"] == 0
    assert rows["ff_arc_challenge:3"]["ratio"] > 1.5 and rows["ff_truthfulqa_mc2"]["ratio"] > 1.5
    assert rows["ff_mmlu_high_school_geography"]["ratio"] == 1  # 4 questions: too few to share their prefix
