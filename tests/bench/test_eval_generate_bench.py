"""bench/eval_throughput.py generate runs end to end on a tiny model on the CPU (timings printed, never asserted)."""
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_generate_stage_on_cpu(tiny_llama, tmp_path):
    shape = json.loads((REPO / "configs" / "shapes" / "llama2-7b.json").read_text())
    shape.update(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, tie_word_embeddings=True)
    (tmp_path / "shape.json").write_text(json.dumps(shape))
    vocab = len(json.loads((tiny_llama / "tokenizer.json").read_text())["model"]["vocab"])
    report = tmp_path / "gen.json"
    out = subprocess.run(
        [sys.executable, "bench/eval_throughput.py", "generate", "--shape", str(tmp_path / "shape.json"),
         "--vocab", str(vocab), "--model-dir", str(tmp_path / "model"), "--tokenizer", str(tiny_llama),
         "--items", "5", "--max-new-tokens", "6", "--reference-items", "3", "--batch-size", "2",
         "--device", "cpu", "--json", str(report)],
        cwd=REPO, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(report.read_text())
    assert set(result["rows"]) == {"plain generate, greedy, all at once", "before: batches of 8, per-row generators",
                                   "ours, greedy", "ours, sampled", "ours, sampled again",
                                   "ours, sampled, rows reversed"}
    assert result["rows"]["before: batches of 8, per-row generators"]["items"] == 3
    assert all(r["new_tokens"] == r["items"] * 6 for r in result["rows"].values())  # random weights: no early stop
    # float32 on the CPU: ours greedy is plain generate's, token for token; sampled rows reproduce in other rows
    assert result["checks"] == {"greedy_identical_items": 5, "greedy_mean_common_prefix": 6.0,
                                "sampled_repeated_items": 5, "sampled_repeat_first_difference": [6, 6],
                                "sampled_reproducible_items": 5, "items": 5}
    assert result["decoding"] == "static cache, eager" and result["matmul_steps"] is True
    assert (result["batches"], result["batch_rows"]) == (3, 2)
    assert "ours, sampled, rows reversed" in out.stdout and "tokens/s" in out.stdout
