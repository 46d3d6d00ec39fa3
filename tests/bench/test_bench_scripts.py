"""The benchmark scripts run end to end on tiny shapes (on the CPU), so a GPU session never finds them broken.
Their timings are printed, never asserted."""
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _run(*args) -> str:
    out = subprocess.run([sys.executable, *map(str, args)], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def test_chunked_loss_bench_prints_both_paths_with_the_same_loss():
    out = _run("bench/chunked_loss.py", "--tokens", 64, "--hidden", 32, "--vocab", 100, "--chunk", 16, "--reps", 1,
               "--cpu")
    rows = {cells[0]: cells for cells in map(str.split, out.splitlines())
            if len(cells) == 4 and cells[0] in ("full", "chunked")}
    assert set(rows) == {"full", "chunked"} and rows["full"][1] == rows["chunked"][1]
    assert "chunked / full: time x" in out


def _tiny_shape(tmp_path, hidden: int = 64, intermediate: int = 128) -> Path:
    shape = json.loads((REPO / "configs" / "shapes" / "llama2-7b.json").read_text())
    shape.update(hidden_size=hidden, intermediate_size=intermediate, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=4)
    (tmp_path / "shape.json").write_text(json.dumps(shape))
    return tmp_path / "shape.json"


def test_throughput_bench_firefly_path_with_overrides(tiny_llama, tmp_path):
    vocab = len(json.loads((tiny_llama / "tokenizer.json").read_text())["model"]["vocab"])
    report = tmp_path / "bench.json"
    out = _run("bench/train_throughput.py", "--shape", _tiny_shape(tmp_path), "--vocab", vocab, "--seq", 32,
               "--micro-batch", 2, "--steps", 2, "--warmup", 1, "--model-dir", tmp_path / "model",
               "--tokenizer", tiny_llama, "--which", "firefly", "--json", report,
               "--", "--precision", "fp32", "--optimizer", "adamw_torch", "--uncheckpointed_layers", "1",
               "--offloaded_layers", "1")
    assert any(line.startswith("firefly ") for line in out.splitlines())
    rows = json.loads(report.read_text())["rows"]
    assert rows["firefly"]["steps"] == 2 and len(rows["firefly"]["losses"]) == 3
    assert rows["firefly"]["offloaded_gib"] == 0.0  # the tiny layer's tensors are under offload.MIN_BYTES


def test_throughput_bench_sft_baseline_is_the_hf_trainer_in_bf16_and_firefly_packs_rows(tiny_llama, tmp_path):
    """`--kind sft`: the baseline runs transformers' Trainer (bf16 autocast, NF4 base, LoRA + trained embeddings)
    over padded micro-batches of conversations, on the CPU with a torch optimizer (the paged ones need CUDA); the
    firefly path trains on micro-batches of rows packed from the same mix, so the loss curves are not compared."""
    vocab = len(json.loads((tiny_llama / "tokenizer.json").read_text())["model"]["vocab"])
    report = tmp_path / "bench.json"
    out = _run("bench/train_throughput.py", "--shape", _tiny_shape(tmp_path), "--vocab", vocab, "--seq", 1024,
               "--micro-batch", 2, "--steps", 2, "--warmup", 1, "--model-dir", tmp_path / "model",
               "--tokenizer", tiny_llama, "--baseline-optim", "adamw_torch", "--kind", "sft", "--json", report,
               "--", "--precision", "bf16", "--optimizer", "adamw_torch",  # bf16: the baseline's, one process
               "--uncheckpointed_layers", "1", "--offloaded_layers", "0",  # the recipe's counts are for 32 layers
               "--compile_layers", "false")  # the compiled path: test_throughput_bench_firefly_path_with_overrides
    assert {line.split()[0] for line in out.splitlines() if line.split()[:1] in (["baseline"], ["firefly"])} == {
        "baseline", "firefly"}
    assert "loss curves not compared" in out
    rows = json.loads(report.read_text())["rows"]
    assert len(rows["firefly"]["losses"]) == 3 and all(loss > 0 for loss in rows["firefly"]["losses"])
    assert len(rows["baseline"]["losses"]) == 3 and all(loss > 0 for loss in rows["baseline"]["losses"])
    assert rows["baseline"]["mixed_precision"] == "bf16"  # the autocast every Trainer(bf16=True) run has
    assert rows["baseline"]["trainable"] > 2 * vocab * 64  # embed_tokens and lm_head are trained in full


def test_throughput_bench_profiles_a_step_by_op_class(tiny_llama, tmp_path):
    """`--profile N`: N more steps under torch.profiler, their time by the issue's op classes (on the CPU: CPU
    time). Widths and token counts differ from the LoRA rank (64) so the matmuls are told apart by shape."""
    vocab = len(json.loads((tiny_llama / "tokenizer.json").read_text())["model"]["vocab"])
    report = tmp_path / "bench.json"
    out = _run("bench/train_throughput.py", "--shape", _tiny_shape(tmp_path, 96, 192), "--vocab", vocab, "--seq", 40,
               "--micro-batch", 2, "--steps", 1, "--warmup", 1, "--profile", 1, "--model-dir", tmp_path / "model",
               "--tokenizer", tiny_llama, "--which", "firefly", "--json", report,
               "--", "--precision", "fp32", "--optimizer", "adamw_torch", "--uncheckpointed_layers", "0",
               "--offloaded_layers", "0", "--compile_layers", "false")  # the eager ops, by the class their names give
    assert "firefly: cpu time per step by op class" in out
    profile = json.loads(report.read_text())["rows"]["firefly"]["profile"]
    ms = profile["ms_per_step"]
    for op_class in ("NF4 dequantise", "base matmuls", "LoRA matmuls", "head + loss", "attention", "dropout",
                     "optimizer"):
        assert ms[op_class] > 0, op_class
    assert "bitsandbytes::dequantize_4bit" in profile["ops"]["NF4 dequantise"]
    assert any("softmax" in op for op in profile["ops"]["head + loss"])
    top = profile["top"]
    assert [r["ms"] for r in top] == sorted((r["ms"] for r in top), reverse=True)
    assert {"op": "bitsandbytes::dequantize_4bit", "class": "NF4 dequantise"}.items() <= next(
        r for r in top if r["op"] == "bitsandbytes::dequantize_4bit").items()


def test_gemm_rates_times_each_way_of_computing_a_frozen_linear(tmp_path):
    report = tmp_path / "gemm.json"
    out = _run("bench/gemm_rates.py", "--tokens", 48, "--hidden", 96, "--intermediate", 160, "--rank", 8,
               "--repeats", 1, "--device", "cpu", "--json", report)
    assert out.splitlines()[-3].startswith("layer")  # then the two FP8 kinds' errors
    shapes = json.loads(report.read_text())["shapes"]
    assert set(shapes) == {"q/k/v/o", "gate/up", "down"}
    for r in shapes.values():
        assert all(r[w] > 0 for w in ("bf16 mm", "nf4 dequant", "nf4 matmul", "lora"))
        for kind in ("rowwise", "tensorwise"):  # e4m3 operands: a few per cent from the bf16 product
            if r[f"fp8 {kind}"] is not None:
                assert 0 < r[f"fp8 {kind} relative error"] < 0.1


def test_nf4_dequant_speed_checks_each_way_against_bitsandbytes(tmp_path):
    """The script refuses a dequantisation whose weights are not bitsandbytes', and times the products of each
    layout."""
    report = tmp_path / "deq.json"
    out = _run("bench/nf4_dequant_speed.py", "--hidden", 64, "--intermediate", 128, "--tokens", 32, "--repeats", 1,
               "--device", "cpu", "--json", report)
    assert "q/k/v fused" in out
    got = json.loads(report.read_text())
    assert set(got["dequantise"]) == {"q/k/v/o", "gate/up"}
    assert all(set(r) == {"bitsandbytes", "nf4_weight", "inductor", "copy"} and r["copy"]["GB/s"] > 0
               for r in got["dequantise"].values())
    assert set(got["products"]) == {"q/k/v/o", "gate/up", "down", "q/k/v fused", "gate/up fused"}


def test_sdpa_backends_times_each_backend_on_new_and_seen_shapes(tmp_path):
    report = tmp_path / "sdpa.json"
    out = _run("bench/sdpa_backends.py", "--shapes", "1", "--repeats", "1", "--heads", "2", "--json", report)
    assert "first call ms" in out
    result = json.loads(report.read_text())
    cases = [name for name, _ in result["cases"]]
    assert cases == ["new 0", "seen", "batch+1", "prefix+1", "width+1"]
    for name in ("default", "math"):  # the CPU has no memory-efficient kernel: that row says it refused
        row = result["backends"][name]
        assert set(row["first_ms"]) == set(cases) and len(row["repeat_ms"]) == len(cases)
        assert row["max_abs_diff_vs_math_fp32"] < 1e-4
    assert "error" in result["backends"]["efficient"]


def test_step_attention_speed_times_every_way_of_a_decoding_step(tmp_path):
    """Grouped heads (4 queries over 2 key/value heads): every way that runs gives the same step within float32
    rounding and the same bits when run again; the CPU's refusals are rows that say so."""
    report = tmp_path / "step.json"
    out = _run("bench/step_attention_speed.py", "--rows", 3, "--heads", 4, "--kv-heads", 2, "--keys", 24,
               "--head-dim", 8, "--iters", 1, "--json", report)
    assert "matmul step, compiled" in out
    result = json.loads(report.read_text())
    assert result["reference"] == "sdpa default"
    assert set(result["ways"]) == {"sdpa efficient", "sdpa cudnn", "sdpa default", "matmul step",
                                   "matmul step, compiled", "reduction, compiled"}
    ran = {name: row for name, row in result["ways"].items() if "error" not in row}
    assert set(ran) == {"sdpa default", "matmul step", "matmul step, compiled", "reduction, compiled"}
    for row in ran.values():
        assert row["repeats_bitwise"] and row["max_abs_diff_vs_reference"] < 1e-5


def test_dropout_speed_times_each_way_and_eager_masks_are_the_uncompiled_ones(tmp_path):
    """Each width times every way; the eager-mask compile draws the uncompiled run's masks, inductor's own do not,
    and each way that drops drops about p; so do the packed masks' ways."""
    report = tmp_path / "dropout.json"
    out = _run("bench/dropout_speed.py", "--tokens", 64, "--widths", 96, 32, "--p", 0.3, "--iters", 1,
               "--json", report)
    assert "inductor keeps four Philox words" in out
    widths = json.loads(report.read_text())["widths"]
    assert set(widths) == {"96", "32"}
    for rows in widths.values():
        assert set(rows) == {"inductor masks", "eager masks", "no dropout", "uncompiled"}
        assert rows["eager masks"]["masks_as_uncompiled"] and not rows["inductor masks"]["masks_as_uncompiled"]
        assert rows["no dropout"]["dropped_share"] == 0 and rows["no dropout"]["x_floor"] == 1
        for name in ("inductor masks", "eager masks", "uncompiled"):
            assert 0.25 < rows[name]["dropped_share"] < 0.35, name
    assert "resolved to 1229/4096" in out
    packed = json.loads(report.read_text())["packed_masks"]
    assert set(packed) == {"96", "32"}
    for rows in packed.values():  # the CPU has no mask_kernel row
        assert set(rows) == {"rand + compiled pack", "rand + pack, uncompiled", "bf16 rand_like (nn.Dropout's draw)"}
        for name in ("rand + compiled pack", "rand + pack, uncompiled"):
            assert rows[name]["ms"] > 0 and 0.25 < rows[name]["dropped_share"] < 0.35, name


def test_host_link_speed_times_each_direction_against_pageable_copies(tmp_path):
    report = tmp_path / "link.json"
    out = _run("bench/host_link_speed.py", "--tokens", 64, "--hidden", 256, "--intermediate", 512, "--repeats", 1,
               "--json", report)
    assert "one layer's tensors, 0.3 MiB" in out  # 6 x 64 x 256 + 2 x 64 x 512 bf16 values
    rows = json.loads(report.read_text())["rows"]
    assert set(rows) == {"pageable: device to host", "pageable: host to device", "pinned: device to host",
                         "pinned: host to device"}  # the CPU: no two-stream row
    assert all(r["gb_s"] > 0 and r["ms_a_layer"] > 0 for r in rows.values())
    assert rows["pageable: device to host"]["x_pageable"] == 1


def test_gpu_call_builds_the_model_then_runs_each_command_within_the_budget(tmp_path):
    """bench/gpu_call.sh with a tiny shape and no carry: the seeded model is built, each command runs in order
    with its exit status logged, and a command still running when the budget is spent is stopped (124)."""
    import os

    shape = json.loads((REPO / "configs" / "shapes" / "llama2-7b.json").read_text())
    shape.update(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                 num_key_value_heads=2)
    (tmp_path / "shape.json").write_text(json.dumps(shape))
    out = tmp_path / "out"
    out.mkdir()
    env = {**os.environ, "OUT": str(out), "CARRY": "/dev/null", "SHAPE": str(tmp_path / "shape.json"),
           "VOCAB": "300", "MODEL": str(tmp_path / "model"), "BUDGET": "20",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}  # its python3: this one
    done = subprocess.run(["bash", "bench/gpu_call.sh", 'echo "hello $OUT"', "exit 3", "sleep 120"], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=300)
    log = (out / "call.log").read_text()
    assert done.returncode == 0, log[-3000:]
    assert json.loads((tmp_path / "model" / "config.json").read_text())["vocab_size"] == 300
    assert f"hello {out}" in log
    ends = [line for line in log.splitlines() if line.startswith("=== rc=")]
    assert [line.split()[1] for line in ends] == ["rc=0", "rc=3", "rc=124"]
    assert "=== model ready" in done.stdout and "=== rc=124" in done.stdout


def test_device_idle_charges_each_gap_to_the_cpu_op_running_in_it():
    """GPU gaps between kernels (other streams count as busy, gaps under the threshold are ignored, a range's
    span on the GPU timeline is not a kernel) are charged to the innermost CPU op running at their middle, on any
    thread, and to its top-level range."""
    from types import SimpleNamespace

    from torch.autograd import DeviceType

    spec = importlib.util.spec_from_file_location("op_profile", REPO / "bench" / "op_profile.py")
    op_profile = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(op_profile)
    device_idle = op_profile.device_idle

    def event(name, start, end, device=DeviceType.CPU, thread=1, parent=None, annotation=False):
        return SimpleNamespace(name=name, device_type=device, time_range=SimpleNamespace(start=start, end=end),
                               thread=thread, cpu_parent=parent, is_user_annotation=annotation)

    step = event("Optimizer.step#AdamW.step", 5, 300)
    events = [step, event("aten::_foreach_add_", 12, 48, parent=step), event("aten::item", 100, 180),
              event("autograd::engine", 0, 400, thread=2)]
    events += [event(f"k{i}", a, b, device=DeviceType.CUDA) for i, (a, b) in
               enumerate([(0, 10), (50, 60), (61, 70), (65, 95), (140, 150)])]
    events.append(event("Optimizer.step#AdamW.step", 5, 300, device=DeviceType.CUDA, annotation=True))
    idle = device_idle(events, steps=2)
    assert idle["ms_per_step"] == 0.0425  # 10-50 and 95-140 (us), over 2 steps; 60-61 is under 20 us
    assert idle["by_op"] == {"aten::_foreach_add_": 0.02, "aten::item": 0.0225}
    assert idle["by_range"] == {"Optimizer.step#AdamW.step": 0.02, "aten::item": 0.0225}


def test_eval_profile_runs_a_firefly_eval_command_under_the_profiler(tiny_llama, tmp_path):
    report = tmp_path / "profile.json"
    out = _run("bench/eval_profile.py", "--json", report, "--", "cmmlu", "--ckpt", tiny_llama, "--data-dir",
               "firefly_eval/minisets/cmmlu", "--subjects", "economics", "-o", tmp_path / "cmmlu.json")
    assert "firefly-eval cmmlu:" in out and "ops taking the most time:" in out
    result = json.loads(report.read_text())
    assert result["returncode"] == 0 and json.loads((tmp_path / "cmmlu.json").read_text())["n_questions"] == 8
    assert "aten::mm" in {row["op"] for row in result["top"]} and 0 < result["ms_in_ops"] < 1000 * result["wall_s"]
    ranges = result["ranges"]  # our scoring ran inside its named ranges, nested as the calls are
    assert ranges["PrefixCachedPPL._run_chunk"]["calls"] >= 1 and ranges["FireflyCausalLM.get_ppl"]["calls"] >= 4
    assert 0 < ranges["PrefixCachedPPL._run_chunk"]["s"] <= ranges["PrefixCachedPPL.__call__"]["s"] \
        <= ranges["FireflyPPLInferencer.inference"]["s"] < result["wall_s"]


def test_lm_eval_exactness_runs_every_variant(tiny_llama, tmp_path):
    """On the CPU in float32 every computation agrees with stock HFLM's within rounding; forcing SDPA's flash
    kernel (the CPU default for this layout) is stock itself."""
    report = tmp_path / "exact.json"
    _run("bench/lm_eval_exactness.py", "--model-dir", tiny_llama, "--questions", 4, "--json", report)
    result = json.loads(report.read_text())
    arc, mmlu = result["multi-token continuations (ARC-like)"], result["shared prefix (MMLU-like)"]
    assert {"stock rows, output layer on scored only", "contexts, then all continuations over cache"} <= set(arc)
    assert "questions over cached prefix, 16 rows" in mmlu
    assert arc["stock, FLASH_ATTENTION only"]["identical_tokens"] is True
    for variants in (arc, mmlu):
        assert all(v["max_abs_token_logprob_diff"] < 1e-4 for v in variants.values())


@pytest.mark.parametrize("rowwise", [True, False])
def test_fp8_loss_bench_emulates_scaled_mm_up_to_the_order_of_float32_sums(rowwise, monkeypatch):
    """bench/fp8_loss.py's CPU stand-in for `torch._scaled_mm` (whose CPU kernel is oneDNN's reference one) gives
    `nf4_linear.fp8_product`'s output: the same e4m3 operands and scales, only summed in another order."""
    bnb = pytest.importorskip("bitsandbytes")
    import torch

    from firefly_train import nf4_linear

    spec = importlib.util.spec_from_file_location("fp8_loss", REPO / "bench" / "fp8_loss.py")
    fp8_loss = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fp8_loss)
    torch.manual_seed(3)
    weight = bnb.nn.Params4bit(torch.randn(96, 256, dtype=torch.bfloat16), requires_grad=False, quant_type="nf4",
                               compress_statistics=True)
    layer = bnb.nn.Linear4bit(256, 96, bias=False, compute_dtype=torch.bfloat16, quant_type="nf4")
    layer.weight = weight
    layer = layer.to("cpu")
    qs = layer.weight.quant_state
    args = (layer.weight, nf4_linear.absmax_of(qs), qs.blocksize, list(qs.shape), rowwise)
    x = torch.randn(3, 10, 256, dtype=torch.bfloat16)
    want = nf4_linear.fp8_product(x, *args)
    monkeypatch.setattr(nf4_linear, "scaled_mm", fp8_loss.emulated_scaled_mm)
    got = nf4_linear.fp8_product(x, *args)
    assert got.shape == want.shape == (3, 10, 96) and got.dtype == want.dtype
    torch.testing.assert_close(got.float(), want.float(), rtol=2 ** -7, atol=1e-3)  # one bf16 rounding apart
    bf16 = x @ nf4_linear.nf4_weight(*args[:4], torch.bfloat16, x).t()
    assert (got.float() - bf16.float()).norm() / bf16.float().norm() > 0.01  # and really FP8, not the bf16 product
