"""Parameter counts and a memory estimate for a training config, without loading any weight.

The model is built from its config on the meta device (`accelerate.init_empty_weights`) and the same
LoRA config training would use is attached (`firefly_train.lora.lora_config`), so the trainable count
is peft's own. The memory estimate is arithmetic on those counts:

- base weights: 4-bit NF4 = 0.5 byte/param + double-quantised constants (1 byte per 64-weight block +
  fp32 per 256 blocks) for every nn.Linear but lm_head; the rest (embeddings, norms, lm_head) in the
  compute dtype, or in fp32 with `upcast_frozen_weights` (as `prepare_model_for_kbit_training` leaves them).
  lora mode: 16-bit base; full: fp32 master weights.
- trainable parameters: fp32 weight + fp32 grad + optimizer state (Adam 8 bytes, 8-bit Adam 2 bytes).
- activations per micro-batch x length, in the compute dtype: without checkpointing every layer keeps
  its inputs of norms, projections, MLP and LoRA dropouts (~10h + 2h_kv + 5i values a token, attention
  through SDPA/flash keeps no s x s matrix); with checkpointing only each layer's input plus one layer
  being recomputed. Logits and their gradient in fp32 are added in both cases. A layer compiled with the fused
  LoRA path keeps less (4h + 2h_kv + 2i values and the dropout masks, as counted in bench/NOTES.md).
  Offloaded layers (`offloaded_layers`) keep theirs in pinned host memory, reported beside the total.
It leaves out the CUDA context, allocator fragmentation and temporary buffers (add ~1-2 GiB).
"""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from torch import nn

from firefly_core.errors import FireflyError
from firefly_core.models import load_tokenizer, resolve_checkpoint
from firefly_train.chunked_loss import MODEL_TYPES

GIB = 1024 ** 3


def load_model_config(ref: str, vocab_size: int | None):
    """A transformers config from a shape JSON (configs/shapes/*.json), an HF folder or an alias."""
    from transformers import AutoConfig

    path = Path(ref)
    if path.suffix == ".json" and path.is_file():
        data = json.loads(path.read_text(encoding="utf-8"))
        config = AutoConfig.for_model(data.pop("model_type", "llama"), **data)
    else:
        config = AutoConfig.from_pretrained(str(resolve_checkpoint(ref).base))
    if vocab_size:
        config.vocab_size = vocab_size
    return config


def _vocab_of(cfg) -> int | None:
    if not cfg.tokenizer:
        return None

    if not Path(cfg.tokenizer).is_dir():
        raise FireflyError(f"tokenizer folder {cfg.tokenizer} not found (give plan --vocab_size N instead)")
    return len(load_tokenizer(cfg.tokenizer))


def _layer_bytes_a_token(cfg, h: int, h_kv: int, i: int, act_bytes: int) -> int:
    """What a layer out of checkpointing keeps for its backward, a token. Compiled with the fused LoRA path
    (`compile_layers`, `lora.fuse_shared_inputs`), as counted in bench/NOTES.md (sixteenth session): its input,
    q, k and v after RoPE, the attention output, the residual after attention, gate and up, and for the LoRA
    dropouts their masks, a bit an element (without dropout: the LoRA products' inputs instead). Otherwise the
    eager estimate of the module docstring."""
    if cfg.mode == "full" or not (cfg.compile_layers and cfg.lora.fuse_shared_inputs):
        return (10 * h + 2 * h_kv + 5 * i) * act_bytes
    kept = (4 * h + 2 * h_kv + 2 * i) * act_bytes
    return kept + ((3 * h + i) // 8 if cfg.lora.dropout > 0 else (2 * h + i) * act_bytes)


def plan(cfg, vocab_size: int | None = None) -> dict:
    """Counts by component and a memory estimate (bytes) for `cfg` (a TrainConfig)."""
    from accelerate import init_empty_weights
    from transformers import AutoModelForCausalLM

    from firefly_train.lora import lora_config

    config = load_model_config(cfg.model, vocab_size or _vocab_of(cfg))
    with init_empty_weights():
        model = AutoModelForCausalLM.from_config(config)
    model.tie_weights()  # init_empty_weights skips tying (SmolLM2 shares embed_tokens and lm_head)
    base_total = sum(p.numel() for p in model.parameters())
    linear = sum(m.weight.numel() for name, m in model.named_modules()
                 if isinstance(m, nn.Linear) and m is not model.get_output_embeddings())
    components: Counter = Counter()
    if cfg.mode == "full":
        trainable = base_total
        components["all weights"] = base_total
    else:
        from peft import get_peft_model

        with init_empty_weights():
            model = get_peft_model(model, lora_config(model, cfg, cfg.train_embeddings))
        for name, p in model.named_parameters():
            if not p.requires_grad:
                continue
            parts = name.split(".")
            if "modules_to_save" in parts:
                components[parts[parts.index("modules_to_save") - 1]] += p.numel()
            else:
                components["lora " + next(parts[i - 1] for i, x in enumerate(parts) if x.startswith("lora_"))] += p.numel()
        trainable = sum(components.values())
    return {"base_params": base_total, "trainable_params": trainable, "components": dict(components),
            "memory": memory(cfg, config, base_total, linear, trainable, components)}


def memory(cfg, config, base_total: int, linear: int, trainable: int, components) -> dict:
    h, layers = config.hidden_size, config.num_hidden_layers
    i = getattr(config, "intermediate_size", 4 * h)
    h_kv = h // config.num_attention_heads * getattr(config, "num_key_value_heads", config.num_attention_heads)
    act_bytes = 4 if cfg.precision == "fp32" else 2
    if cfg.mode == "qlora":
        weights = linear * (0.5 + 1 / 64 + 4 / (64 * 256)) + (base_total - linear) * (
            4 if cfg.upcast_frozen_weights else act_bytes)
    else:
        weights = base_total * (4 if cfg.mode == "full" else 2)
    if cfg.mode == "full":
        weights = 0  # counted as trainable below
    state = 2 if cfg.optimizer in ("adamw_8bit", "paged_adamw_8bit") else 8
    train = trainable * (4 + 4 + state)
    tokens = cfg.micro_batch_size * cfg.max_seq_length
    per_layer = tokens * _layer_bytes_a_token(cfg, h, h_kv, i, act_bytes)
    # fp32 logits and their gradient: all tokens at once, or one chunk of them (firefly_train.chunked_loss)
    chunked = cfg.loss_chunk_tokens > 0 and getattr(config, "model_type", None) in MODEL_TYPES
    logits = min(tokens, cfg.loss_chunk_tokens if chunked else tokens) * config.vocab_size * 4 * 2
    kept = min(max(cfg.uncheckpointed_layers, 0), layers)  # layers whose activations stay (no recompute)
    offloaded = min(max(cfg.offloaded_layers, 0), layers - kept)  # layers whose activations go to host memory
    with_ckpt = (layers - kept - offloaded) * tokens * h * act_bytes + max(kept, 1) * per_layer + logits
    without = layers * per_layer + logits
    act = with_ckpt if cfg.gradient_checkpointing else without
    # bitsandbytes' paged optimizers keep their state in CUDA unified memory, outside PyTorch's allocator
    paged = trainable * state if cfg.optimizer.startswith("paged_") else 0
    return {"weights": weights, "trainable_state": train, "paged_optimizer_state": paged,
            "offloaded_activations": offloaded * per_layer if cfg.gradient_checkpointing else 0,
            "activations_checkpointing": with_ckpt, "activations_no_checkpointing": without,
            "total": weights + train + act}


def _m(n: int) -> str:
    return f"{n / 1e6:,.1f}M ({n:,})"


def format_plan(cfg, result: dict) -> str:
    mem = result["memory"]
    kept = f" (last {cfg.uncheckpointed_layers} layers not checkpointed)" if cfg.uncheckpointed_layers else ""
    lines = [f"model {cfg.model}: {_m(result['base_params'])} parameters, mode {cfg.mode}",
             f"trainable: {_m(result['trainable_params'])}"]
    lines += [f"  {name:<16} {_m(n)}" for name, n in result["components"].items()]
    lines += [f"memory estimate (micro-batch {cfg.micro_batch_size} x {cfg.max_seq_length}, "
              f"optimizer {cfg.optimizer}):",
              f"  base weights              {mem['weights'] / GIB:8.2f} GiB",
              f"  trainable + grads + optim {mem['trainable_state'] / GIB:8.2f} GiB",
              f"  activations, checkpointing{mem['activations_checkpointing'] / GIB:8.2f} GiB{kept}",
              f"  activations, none         {mem['activations_no_checkpointing'] / GIB:8.2f} GiB",
              f"  total (gradient_checkpointing={cfg.gradient_checkpointing}) {mem['total'] / GIB:.2f} GiB "
              "(+ CUDA context and allocator slack)"]
    if mem["offloaded_activations"]:
        lines.append(f"  offloaded activations     {mem['offloaded_activations'] / GIB:8.2f} GiB of pinned host memory "
                     f"(first {cfg.offloaded_layers} layers; not in the total)")
    if mem["paged_optimizer_state"]:
        lines.append(f"  of which paged optimizer state {mem['paged_optimizer_state'] / GIB:.2f} GiB (CUDA unified "
                     "memory: can spill to CPU RAM, not counted by torch.cuda.max_memory_allocated, so "
                     f"run_info's peak compares with {(mem['total'] - mem['paged_optimizer_state']) / GIB:.2f} GiB)")
    return "\n".join(lines)
