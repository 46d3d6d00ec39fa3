"""bench/eval_throughput.py leaderboard runs end to end on the CPU (tiny model, mini sets): both paths, the
request-by-request comparison and the JSON. Timings are printed, never asserted."""
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_leaderboard_stage_compares_stock_and_ours(tiny_llama, tmp_path):
    report = tmp_path / "lb.json"
    out = subprocess.run([sys.executable, "bench/eval_throughput.py", "leaderboard", "--model-dir", str(tiny_llama),
                          "--data-dir", "firefly_eval/minisets/english", "--limit", "2", "--dtype", "float32",
                          "--noise-batch-size", "3", "--json", str(report)], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "firefly / stock: time x" in out.stdout
    result = json.loads(report.read_text())
    assert set(result["rows"]) == {"hf (stock HFLM)", "firefly (FireflyLM)", "hf, batch 3"}
    # 2 questions per task (per MMLU subject): ARC 4+4, HellaSwag 4+4, MMLU 2 subjects x 2 x 4, TruthfulQA mc2 3+4
    assert result["requests_compared"] == result["rows"]["hf (stock HFLM)"]["requests"] > 16
    assert result["max_abs_loglikelihood_diff"] < 1e-4 and result["is_greedy_differences"] == 0
    assert result["max_abs_metric_diff"] < 1e-6 and result["dtype"] == "torch.float32"
    noise = result["stock_against_itself"]  # the stock engine at batch 3 against itself at 8
    assert noise["batch_size"] == 3 and noise["max_abs_loglikelihood_diff"] < 1e-4 and noise["is_greedy_differences"] == 0
    assert "stock at batch 8 vs stock at batch 3" in out.stdout
