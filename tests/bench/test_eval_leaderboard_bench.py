"""bench/eval_throughput.py leaderboard runs end to end on the CPU (tiny model, mini sets): both paths per task,
the request-by-request comparison and the JSON; a sharded run (`--docs`, `--mmlu-subjects`) and
bench/leaderboard_shards.py adding shards up. Timings are printed, never asserted."""
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
MINI = "firefly_eval/minisets/english"


def _bench(tiny_llama, *extra):
    return subprocess.run([sys.executable, "bench/eval_throughput.py", "leaderboard", "--model-dir", str(tiny_llama),
                           "--data-dir", MINI, "--dtype", "float32", *extra], cwd=REPO, capture_output=True,
                          text=True, timeout=600)


def test_leaderboard_stage_compares_stock_and_ours_per_task(tiny_llama, tmp_path):
    report = tmp_path / "lb.json"
    out = _bench(tiny_llama, "--limit", "2", "--noise-batch-size", "3", "--json", str(report))
    assert out.returncode == 0, out.stderr[-3000:]
    assert "firefly / stock: time x" in out.stdout
    result = json.loads(report.read_text())
    assert list(result["units"]) == ["arc_challenge", "hellaswag", "mmlu", "truthfulqa_mc2"]
    # 2 questions per task (per MMLU subject): ARC 4+4, HellaSwag 4+4, MMLU 2 subjects x 2 x 4, TruthfulQA mc2 3+3
    requests = {label: u["stock"]["requests"] for label, u in result["units"].items()}
    assert requests == {"arc_challenge": 8, "hellaswag": 8, "mmlu": 16, "truthfulqa_mc2": 6}
    for u in result["units"].values():
        assert u["ours"]["requests"] == u["agreement"]["requests_compared"] == u["stock"]["requests"]
        assert u["ours"]["metrics"] == u["stock"]["metrics"] != {}
    assert result["requests_compared"] == result["requests"] == 38
    assert result["max_abs_loglikelihood_diff"] < 1e-4 and result["is_greedy_differences"] == 0
    assert result["max_abs_metric_diff"] < 1e-6 and result["dtype"] == "torch.float32"
    assert result["stock_seconds"] == sum(u["stock"]["seconds"] for u in result["units"].values())
    noise = result["stock_against_itself"]  # the stock engine at batch 3 against itself at 8
    assert result["noise_batch_size"] == 3 and noise["max_abs_loglikelihood_diff"] < 1e-4
    assert noise["is_greedy_differences"] == 0 and noise["metrics_identical"]


def test_shards_cover_chosen_documents_and_add_up(tiny_llama, tmp_path):
    first, second = tmp_path / "a.json", tmp_path / "b.json"
    out = _bench(tiny_llama, "--tasks", "arc_challenge", "hellaswag", "--docs", "1:3", "--json", str(first))
    assert out.returncode == 0, out.stderr[-3000:]
    out = _bench(tiny_llama, "--tasks", "hellaswag", "mmlu", "--docs", "3:",
                 "--mmlu-subjects", "high_school_geography", "--json", str(second))
    assert out.returncode == 0, out.stderr[-3000:]
    a, b = json.loads(first.read_text()), json.loads(second.read_text())
    assert list(a["units"]) == ["arc_challenge docs 1:3", "hellaswag docs 1:3"]
    assert list(b["units"]) == ["hellaswag docs 3:12", "mmlu (1 subjects)"]  # 12 HellaSwag documents in the mini set
    assert b["units"]["hellaswag docs 3:12"]["stock"]["requests"] == 9 * 4
    assert b["units"]["mmlu (1 subjects)"]["stock"]["requests"] == 4 * 4  # every question of the subject
    assert all(u["agreement"]["max_abs_loglikelihood_diff"] < 1e-4 for u in [*a["units"].values(), *b["units"].values()])

    total = tmp_path / "total.json"
    out = subprocess.run([sys.executable, "bench/leaderboard_shards.py", str(first), str(second), "--json", str(total)],
                         cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-3000:]
    summed = json.loads(total.read_text())
    assert summed["requests"] == a["requests"] + b["requests"]
    assert summed["ours_seconds"] == a["ours_seconds"] + b["ours_seconds"]
    assert "hellaswag docs 3:12" in out.stdout and "total" in out.stdout

    again = subprocess.run([sys.executable, "bench/leaderboard_shards.py", str(first), str(first)],
                           cwd=REPO, capture_output=True, text=True, timeout=60)
    assert again.returncode != 0 and "an earlier shard measured as well" in again.stderr


def test_a_run_cut_short_keeps_its_finished_units(tiny_llama, tmp_path):
    """The JSON is rewritten after every unit, so a call's time limit loses only the unit running then: here the
    run is killed once the first unit is in, and bench/leaderboard_shards.py adds up what was kept."""
    import time

    report = tmp_path / "cut.json"
    proc = subprocess.Popen([sys.executable, "bench/eval_throughput.py", "leaderboard", "--model-dir", str(tiny_llama),
                             "--data-dir", MINI, "--dtype", "float32", "--tasks", "arc_challenge", "hellaswag", "mmlu",
                             "--limit", "2", "--json", str(report)], cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 500
    while not report.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    kept = json.loads(report.read_text())
    assert kept["partial"] is True and list(kept["units"])[0] == "arc_challenge" and len(kept["units"]) < 3
    out = subprocess.run([sys.executable, "bench/leaderboard_shards.py", str(report)], cwd=REPO, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "arc_challenge" in out.stdout and "total" in out.stdout


def _shard(path: Path, units: dict) -> Path:
    """A shard JSON as bench/eval_throughput.py writes it, cut to what leaderboard_shards.py reads."""
    agreement = {"requests_compared": 4, "max_abs_loglikelihood_diff": 0.0, "is_greedy_differences": 0,
                 "max_abs_metric_diff": 0.0, "metrics_identical": True}
    path.write_text(json.dumps({"dtype": "torch.bfloat16", "batch_size": "auto", "units": {
        label: {"stock": {"seconds": 3.0, "requests": 4, "metrics": {m: 0.25 for m in metrics}},
                "ours": {"seconds": 1.0, "requests": 4, "metrics": {m: 0.25 for m in metrics}},
                "agreement": agreement} for label, metrics in units.items()}}))
    return path


def test_shards_are_checked_by_what_they_measured_not_by_label(tmp_path):
    """MMLU shards with as many subjects share a label ('mmlu (10 subjects)' twice on the H200): disjoint subjects
    add up, a subject measured twice is refused; so are overlapping document ranges and a whole task next to a
    shard of it."""
    def merge(*shards):
        return subprocess.run([sys.executable, "bench/leaderboard_shards.py", *map(str, shards)], cwd=REPO,
                              capture_output=True, text=True, timeout=60)

    law = _shard(tmp_path / "law.json", {"mmlu (2 subjects)": ["ff_mmlu_law/acc,none", "ff_mmlu_virology/acc,none"]})
    other = _shard(tmp_path / "other.json", {"mmlu (2 subjects)": ["ff_mmlu_anatomy/acc,none",
                                                                    "ff_mmlu_nutrition/acc,none"]})
    again = _shard(tmp_path / "again.json", {"mmlu (1 subjects)": ["ff_mmlu_virology/acc,none"]})
    out = merge(law, other)
    assert out.returncode == 0, out.stderr
    assert "mmlu (2 subjects) [other]" in out.stdout and "speed-up x3.00); 8 requests compared" in out.stdout
    refused = merge(law, again)
    assert refused.returncode != 0 and "measures mmlu items an earlier shard measured" in refused.stderr

    first = _shard(tmp_path / "hs0.json", {"hellaswag docs 0:1000": ["hellaswag/acc,none"]})
    overlap = _shard(tmp_path / "hs1.json", {"hellaswag docs 900:2000": ["hellaswag/acc,none"]})
    whole = _shard(tmp_path / "hs.json", {"hellaswag": ["hellaswag/acc,none"]})
    next_one = _shard(tmp_path / "hs2.json", {"hellaswag docs 1000:2000": ["hellaswag/acc,none"]})
    assert merge(first, next_one).returncode == 0
    assert merge(first, overlap).returncode != 0
    assert merge(first, whole).returncode != 0 and merge(whole, first).returncode != 0
