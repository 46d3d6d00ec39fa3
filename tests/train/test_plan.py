from pathlib import Path

import pytest

from firefly_train.cli import main
from firefly_train.config import load_config
from firefly_train.plan import plan
from firefly_train.recipes.plan import PlanConfig

SHAPES = Path(__file__).resolve().parents[2] / "configs" / "shapes"


def _cfg(shape, **over):
    over = {"model": str(SHAPES / shape), "lora.r": 64, "train_embeddings": True, **over}
    return load_config(PlanConfig, None, over)


@pytest.mark.parametrize("shape,trainable,lora", [("llama2-7b.json", 612_892_672, 159_907_840),
                                                  ("llama2-13b.json", 816_578_560, 250_347_520)])
def test_seed_recipe_trainable_counts(shape, trainable, lora):
    result = plan(_cfg(shape), vocab_size=55296)
    assert result["trainable_params"] == trainable
    comps = result["components"]
    hidden = 4096 if "7b" in shape else 5120
    assert comps["embed_tokens"] == comps["lm_head"] == 55296 * hidden
    assert sum(n for k, n in comps.items() if k.startswith("lora ")) == lora
    assert comps["lora q_proj"] == (32 if "7b" in shape else 40) * 64 * 2 * hidden


def test_cli_prints_rounded_counts_and_memory(capsys):
    assert main(["plan", "--model", str(SHAPES / "llama2-7b.json"), "--vocab_size", "55296",
                 "--lora.r", "64", "--train_embeddings", "true"]) == 0
    out = capsys.readouterr().out
    assert "trainable: 612.9M (612,892,672)" in out and "lora down_proj" in out and "GiB" in out
    memory_lines = ["base weights", "trainable + grads + optim", "activations, checkpointing", "activations, none",
                    "total (gradient_checkpointing=True)"]
    assert all(any(line.strip().startswith(m) for line in out.splitlines()) for m in memory_lines)
    assert main(["plan", "--model", str(SHAPES / "llama2-7b.json"), "--vocab_size", "55296",
                 "--uncheckpointed_layers", "4"]) == 0
    assert "(last 4 layers not checkpointed)" in capsys.readouterr().out
    assert main(["plan", "--model", str(SHAPES / "llama2-13b.json"), "--vocab_size", "55296",
                 "--lora.r", "64", "--train_embeddings", "true"]) == 0
    assert "trainable: 816.6M (816,578,560)" in capsys.readouterr().out


def test_memory_estimate_orders():
    cfg = _cfg("llama2-7b.json", micro_batch_size=8)
    mem = plan(cfg, vocab_size=55296)["memory"]
    assert mem["activations_checkpointing"] < mem["activations_no_checkpointing"]
    # 4-bit linear weights + 16-bit frozen embeddings/norms: 4.0 GiB (fp32 as peft's prepare_model_for_kbit_training
    # leaves them: 4.8 GiB); 612.9M trainable x 16 bytes (fp32 Adam)
    assert round(mem["weights"] / 2**30, 1) == 4.0
    upcast = plan(_cfg("llama2-7b.json", micro_batch_size=8, upcast_frozen_weights=True), vocab_size=55296)["memory"]
    assert round(upcast["weights"] / 2**30, 1) == 4.8
    assert mem["trainable_state"] == 612_892_672 * 16
    # the chunked loss keeps one 2,048-token chunk of fp32 logits and their gradient, not all 8,192
    full = plan(_cfg("llama2-7b.json", micro_batch_size=8, loss_chunk_tokens=0), vocab_size=55296)["memory"]
    saved = full["activations_checkpointing"] - mem["activations_checkpointing"]
    assert saved == (8192 - 2048) * 55296 * 8
    # layers left out of checkpointing keep their whole activations: all 32 left out is no checkpointing
    few = plan(_cfg("llama2-7b.json", micro_batch_size=8, uncheckpointed_layers=4), vocab_size=55296)["memory"]
    every = plan(_cfg("llama2-7b.json", micro_batch_size=8, uncheckpointed_layers=32), vocab_size=55296)["memory"]
    assert mem["activations_checkpointing"] < few["activations_checkpointing"] < every["activations_checkpointing"]
    assert every["activations_checkpointing"] == every["activations_no_checkpointing"]
    # paged optimizers hold Adam's two fp32 moments in CUDA unified memory (outside PyTorch's allocator)
    paged = plan(_cfg("llama2-7b.json", optimizer="paged_adamw_32bit"), vocab_size=55296)["memory"]
    assert paged["paged_optimizer_state"] == 612_892_672 * 8 and mem["paged_optimizer_state"] == 0
    lora_only = plan(_cfg("llama2-7b.json", train_embeddings=False))
    assert lora_only["trainable_params"] == 159_907_840


def test_a_compiled_fused_layer_is_planned_as_measured():
    """With compile_layers and lora.fuse_shared_inputs a kept 13B layer at 8 x 1024 tokens holds what bench/NOTES.md
    counts (sixteenth session): its input, q, k, v, the attention output, the residual, gate and up in bf16, and
    the four dropout masks as bits (seventeenth session); the 13B recipe's 13 kept layers then plan to within
    1 GiB of the 29.0 GiB measured on an H200."""
    def act(**over):
        cfg = _cfg("llama2-13b.json", micro_batch_size=8, precision="bf16", optimizer="adamw_8bit", **over)
        return plan(cfg, vocab_size=55296)["memory"]

    fused = {"compile_layers": True, "lora.fuse_shared_inputs": True}
    one_more = act(uncheckpointed_layers=13, **fused)["activations_checkpointing"] - act(
        uncheckpointed_layers=12, **fused)["activations_checkpointing"]
    h, i = 5120, 13824
    kept = (4 * h + 2 * h + 2 * i) * 2 + (3 * h + i) // 8  # bf16 activations, mask bits (h_kv = h at 13B)
    assert one_more == 8192 * (kept - h * 2)  # its activations, less its checkpointed input
    eager = act(uncheckpointed_layers=13)["activations_checkpointing"] - act(
        uncheckpointed_layers=12)["activations_checkpointing"]
    assert eager > one_more
    recipe = act(uncheckpointed_layers=13, **fused)
    total = recipe["weights"] + recipe["trainable_state"] + recipe["activations_checkpointing"]
    assert abs(total / 2**30 - 29.0) < 1.0


def test_offloaded_layers_leave_the_device_for_pinned_host_memory(capsys):
    """An offloaded layer neither keeps its checkpointed input on the device nor is recomputed: the device's
    activations drop by that input, and host memory holds what a kept layer would."""
    def mem(kept=13, **over):
        return plan(_cfg("llama2-13b.json", micro_batch_size=8, uncheckpointed_layers=kept, **over),
                    vocab_size=55296)["memory"]

    base, off = mem(), mem(offloaded_layers=10)
    kept_layer = mem(kept=14)["activations_checkpointing"] - base["activations_checkpointing"] + 8192 * 5120 * 2
    assert base["activations_checkpointing"] - off["activations_checkpointing"] == 10 * 8192 * 5120 * 2
    assert off["offloaded_activations"] == 10 * kept_layer and base["offloaded_activations"] == 0
    assert main(["plan", "--model", str(SHAPES / "llama2-13b.json"), "--vocab_size", "55296",
                 "--offloaded_layers", "10"]) == 0
    assert "of pinned host memory (first 10 layers; not in the total)" in capsys.readouterr().out


def test_plan_on_embedded_model_without_loading_weights(smollm2):
    result = plan(load_config(PlanConfig, None, {"model": str(smollm2), "lora.r": 8, "train_embeddings": True}))
    # SmolLM2 ties lm_head to embed_tokens: one trained matrix, 49152 x 576
    assert result["components"]["embed_tokens"] == 49152 * 576
    assert result["base_params"] == 134_515_008
