"""The configs of `firefly-train pretrain` and `sft`: every key, its default and its help, in one place.

Loaded with `firefly_train.config.load_config` (YAML file + `--key value` overrides); `docs/training.md`
is generated from these dataclasses (`firefly-train pretrain --print-keys`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


def _help(text: str, default=None, factory=None, minimum=None):
    """A documented key; `minimum`: the smallest value `load_config` accepts."""
    metadata = {"help": text} if minimum is None else {"help": text, "min": minimum}
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass
class LoraSection:
    r: int = _help("LoRA rank", 64)
    alpha: int = _help("LoRA alpha (scaling = alpha / r)", 16)
    dropout: float = _help("dropout on the LoRA input", 0.05)
    target_modules: list[str] = _help(
        "module names to adapt (suffix match, e.g. [q_proj, v_proj]); 'all-linear' = every nn.Linear but lm_head",
        factory=lambda: ["all-linear"])
    fuse_shared_inputs: bool = _help(
        "one dropout mask and one down-projection for the LoRA branches that read the same input (q/k/v, "
        "gate/up), each branch added to its base output in one addmm (compiled: in the next fused kernel); saved "
        "adapters are unchanged (firefly_train.fused_lora)", False)


@dataclass
class TrainConfig:
    model: str = _help("base model: embedded alias, HF folder, cached hub id, or (to continue training) a "
                       "firefly-train checkpoint or run folder", "smollm2-135m")
    tokenizer: str | None = _help("tokenizer folder (e.g. an expanded vocabulary); default: the model's own", None)
    embedding_init: Literal["pieces", "mean", "random"] = _help(
        "how rows for new tokens are initialised when the tokenizer is larger than the model", "pieces")
    data: list[str] = _help("training files or folders", factory=list)
    output_dir: str | None = _help("run folder (also -o/--output_dir)", None)
    mode: Literal["qlora", "lora", "full"] = _help(
        "qlora: 4-bit NF4 double-quant base + LoRA; lora: 16-bit base + LoRA; full: all weights", "qlora")
    lora: LoraSection = _help("LoRA settings (qlora and lora modes)", factory=LoraSection)
    train_embeddings: bool = _help("train embed_tokens and lm_head in full (needed after vocabulary expansion)",
                                   False)
    upcast_frozen_weights: bool = _help(
        "qlora: upcast every frozen 16-bit weight (norms) to fp32 as peft's prepare_model_for_kbit_training does, "
        "which makes the residual stream fp32 under autocast; false: frozen weights stay in the compute dtype, "
        "trained ones (LoRA, embeddings) are fp32 master weights, activations 16-bit (faster, less memory)", False)
    max_seq_length: int = _help("tokens per training sequence", 1024)
    micro_batch_size: int = _help("sequences per device per forward pass", 8, minimum=1)
    gradient_accumulation_steps: int = _help("micro-batches per optimizer step", 1, minimum=1)
    num_epochs: float = _help("passes over the data (ignored when max_steps > 0)", 1.0)
    max_steps: int = _help("optimizer steps to run; 0 = derive from num_epochs", 0)
    learning_rate: float = _help("peak learning rate", 2e-4)
    lr_scheduler: str = _help("transformers.get_scheduler name: cosine, linear, constant_with_warmup, ...", "cosine")
    warmup_steps: int = _help("linear warmup steps (overrides warmup_ratio when > 0)", 0)
    warmup_ratio: float = _help("warmup as a fraction of all steps", 0.0)
    weight_decay: float = _help("AdamW weight decay", 0.0)
    max_grad_norm: float = _help("gradient clipping norm; 0 = off", 1.0)
    optimizer: Literal["adamw_torch", "adamw_8bit", "paged_adamw_8bit", "paged_adamw_32bit"] = _help(
        "optimizer: adamw_torch is torch's (fused on a GPU); adamw_8bit is bitsandbytes' 8-bit state without its wait "
        "after each parameter; the paged ones are bitsandbytes' own and need CUDA", "adamw_torch")
    precision: Literal["auto", "bf16", "fp16", "fp32"] = _help(
        "mixed precision / 4-bit compute dtype; auto = bf16 on a GPU that supports it (else fp16), fp32 on CPU", "auto")
    attn_implementation: Literal["sdpa", "varlen", "eager", "flex_attention", "flash_attention_2"] = _help(
        "attention kernels (transformers' attn_implementation): sdpa = PyTorch's fused attention (packed rows: "
        "a block-diagonal mask over the whole row); varlen = PyTorch's variable-length FlashAttention, each "
        "packed conversation attended alone (CUDA, PyTorch >= 2.10; a per-conversation loop elsewhere; "
        "firefly_train.varlen_attention); flash_attention_2 needs the flash-attn package and a GPU; "
        "flex_attention compiles a block mask for packed rows", "sdpa")
    gradient_checkpointing: bool = _help("recompute activations in backward to save memory", True)
    compile_layers: bool = _help(
        "torch.compile each decoder layer: the elementwise work between the matrix products (norms, RoPE, "
        "activation, dropout, LoRA scaling, residual adds, casts) fused into few kernels, NF4 weights dequantised "
        "inside the compiled code (firefly_train.nf4_linear); compiles at the first step "
        "(firefly_train.lora.compile_layers)", False)
    compile_eager_dropout: bool = _help(
        "with compile_layers, draw the LoRA dropout masks with PyTorch's eager random kernels (inductor's "
        "fallback_random) instead of inside the fused kernels: the masks an uncompiled run draws, four random "
        "numbers per Philox evaluation (inductor's kernels use one unless they have rand4x, as PyTorch 2.13 does), "
        "one more pass over the random values (with lora.fuse_shared_inputs: a 13B MLP input's packed mask in "
        "0.164 ms against 0.243 on an H200, bench/NOTES.md)", False)
    fp8_base_products: Literal["none", "rowwise", "tensorwise"] = _help(
        "with compile_layers and mode qlora, the frozen NF4 base's forward products in FP8 (torch._scaled_mm; an "
        "FP8 GPU, compute capability 8.9 or later, or the CPU): the weight dequantised to e4m3 with a scale per "
        "output row and the input with one per token (rowwise), or one scale each (tensorwise); the backward stays "
        "in the compute dtype. About 3.6 % relative error in those products (firefly_train.nf4_linear); 2.15x at 13B "
        "on an H200, but it fails the loss check on a real model (bench/fp8_loss.py), so check yours", "none")
    uncheckpointed_layers: int = _help(
        "with gradient_checkpointing, the last N decoder layers keep their activations instead of recomputing "
        "them: each saves one layer's forward recompute per step and costs one layer's activations (`plan` "
        "shows both)", 0)
    offloaded_layers: int = _help(
        "with gradient_checkpointing, the first N decoder layers keep their activations in pinned host memory "
        "instead of recomputing them (firefly_train.offload): copied out while the next layers compute and back "
        "ahead of their own backward; pays while the host link keeps up (H200: 13B 2.01x -> 2.20x the Trainer "
        "baseline with 20 layers, 7B 2.12x -> 2.24x with 10; `plan` shows the host memory)", 0)
    loss_chunk_tokens: int = _help(
        "compute the loss on labelled positions only, this many at a time under checkpointing, so the "
        "full logits tensor (tokens x vocabulary, in fp32) never exists; 0 = transformers' loss on the full "
        "logits. Used for the model types in firefly_train.chunked_loss.MODEL_TYPES", 2048, minimum=0)
    seed: int = _help("seed for initialisation, dropout and data order", 42)
    logging_steps: int = _help("log loss every N optimizer steps (loss.jsonl, TensorBoard)", 1, minimum=1)
    save_steps: int = _help("write a resumable checkpoint every N optimizer steps", 500, minimum=1)
    save_total_limit: int = _help("keep at most N checkpoints (oldest deleted); 0 = keep all", 3)
    resume: str = _help("auto: continue from the newest complete checkpoint in output_dir; never: refuse a "
                        "folder with checkpoints; or a checkpoint folder", "auto")
    deepspeed: str | None = _help("DeepSpeed JSON config (e.g. configs/deepspeed/zero2.json); needs the "
                                  "'deepspeed' extra", None)


@dataclass
class PretrainConfig(TrainConfig):
    num_proc: int = _help("processes for tokenization (cached by tokenizer and file hash)", 2)


@dataclass
class SftConfig(TrainConfig):
    template: str = _help("chat template: auto (the tokenizer's own), or a registry name (llama2, qwen, "
                          "baichuan2, internlm2, falcon, firefly, ...)", "auto")
    packing: bool = _help(
        "pack conversations into rows of up to max_seq_length tokens (best-fit decreasing), no padding; a "
        "micro-batch is micro_batch_size such rows. Position ids restart per conversation, so none attends to "
        "another (on a GPU use attn_implementation varlen: attention cost then follows the conversations, not "
        "the row); left off for models with custom modelling code (auto_map in config.json), whose attention "
        "may ignore packed position ids", True)


CONFIGS = {"pretrain": PretrainConfig, "sft": SftConfig}
