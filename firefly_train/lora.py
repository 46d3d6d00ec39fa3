"""Load a base model for training (4-bit NF4 double-quant, 16-bit, or full) and attach LoRA.

`resolve_sources` works out which base, adapter and tokenizer a config means (a plain model, or a
firefly-train checkpoint to continue); `build_model` loads the base on the given device, grows the
vocabulary when the tokenizer is larger, and attaches (or reloads) the adapter. Trained embeddings are
peft `modules_to_save`, so they are saved in full in `adapter_model.safetensors` and load back with
`PeftModel.from_pretrained`; tied input/output embeddings (SmolLM2) stay tied.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from firefly_core.errors import FireflyError
from firefly_core.models import load_tokenizer, resolve_checkpoint
from firefly_train.fused_lora import fuse_shared_inputs

log = logging.getLogger(__name__)


@dataclass
class Sources:
    base_ref: str  # what firefly_checkpoint.json records as base_model
    base: Path  # HF folder of the base weights
    adapter: Path | None  # adapter to continue from (sft after pretrain), None for a fresh one
    tokenizer: Path
    train_embeddings: bool


def _ref_string(ref: str) -> str:
    path = Path(ref).expanduser()
    return str(path.resolve()) if path.exists() else ref


def resolve_sources(cfg) -> Sources:
    """The base, adapter and tokenizer a config trains from (a checkpoint's own tokenizer when continuing)."""
    ck = resolve_checkpoint(cfg.model)
    if ck.adapter is not None:
        if cfg.mode == "full":
            raise FireflyError(f"model {cfg.model} is a LoRA checkpoint: continue it with mode qlora or lora, "
                               "or merge it first (firefly-train merge) for full training")
        base_ref = ck.meta["base_model"]
        train_embeddings = cfg.train_embeddings or bool(ck.meta.get("train_embeddings"))
    else:
        base_ref = str(ck.base.resolve()) if ck.meta else _ref_string(cfg.model)
        train_embeddings = cfg.train_embeddings
    tokenizer = Path(cfg.tokenizer).expanduser() if cfg.tokenizer else ck.tokenizer
    if not tokenizer.is_dir():
        raise FireflyError(f"tokenizer folder {tokenizer} not found")
    return Sources(base_ref, ck.base, ck.adapter, tokenizer, train_embeddings)


def compute_dtype(precision: str) -> torch.dtype:
    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision, torch.float32)


def resolve_precision(precision: str, device: torch.device) -> str:
    if precision != "auto":
        return precision
    if device.type != "cuda":
        return "fp32"
    return "bf16" if torch.cuda.is_bf16_supported() else "fp16"


def load_base(folder: Path, mode: str, dtype: torch.dtype, device: torch.device, attn: str):
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    if attn == "varlen":
        from firefly_train import varlen_attention  # registers the implementation with transformers
    kwargs = {"attn_implementation": attn}
    if mode == "qlora":
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=dtype)
        kwargs["device_map"] = {"": device}
    try:
        model = AutoModelForCausalLM.from_pretrained(
            str(folder), dtype=torch.float32 if mode == "full" else dtype, **kwargs)
    except ImportError as e:  # flash_attention_2 without the flash-attn package
        raise FireflyError(f"config key 'attn_implementation': {attn} is not available here ({e})") from None
    model.config.use_cache = False
    if attn == "varlen":
        varlen_attention.install(model)
    return model


def grow_vocabulary(model, tokenizer, base_folder: Path, method: str) -> None:
    """Resize embed_tokens / lm_head to the tokenizer; new rows initialised from the old tokenizer's pieces."""
    from firefly_train.vocab.embeddings import resize_and_init

    resize_and_init(model, load_tokenizer(base_folder), tokenizer, method=method)


def _short_name(model, module) -> str:
    return next(name for name, m in model.named_modules() if m is module).rsplit(".", 1)[-1]


def check_targets(model, targets: list[str]) -> None:
    names = [name for name, _ in model.named_modules()]
    for t in targets:
        if t != "all-linear" and not any(n == t or n.endswith("." + t) for n in names):
            kinds = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, nn.Linear)})
            raise FireflyError(f"LoRA target '{t}' matches no module of the model (its linear layers: "
                               f"{', '.join(kinds)})")


def embeddings_tied(model) -> bool:
    out = model.get_output_embeddings()
    return out is not None and out.weight is model.get_input_embeddings().weight


def lora_config(model, cfg, train_embeddings: bool):
    from peft import LoraConfig

    targets = cfg.lora.target_modules
    check_targets(model, targets)
    save = None
    if train_embeddings:
        save = [_short_name(model, model.get_input_embeddings()), _short_name(model, model.get_output_embeddings())]
    return LoraConfig(
        r=cfg.lora.r, lora_alpha=cfg.lora.alpha, lora_dropout=cfg.lora.dropout,
        target_modules="all-linear" if targets == ["all-linear"] else targets,
        modules_to_save=save, ensure_weight_tying=bool(save) and embeddings_tied(model), task_type="CAUSAL_LM")


def build_model(cfg, src: Sources, tokenizer, device: torch.device, dtype: torch.dtype,
                adapter: Path | None = None, weights: Path | None = None):
    """The model ready to train, in training mode. `adapter`/`weights`: a checkpoint to resume (LoRA / full
    mode)."""
    if cfg.fp8_base_products != "none" and not (cfg.compile_layers and cfg.mode == "qlora"):
        raise FireflyError("config key 'fp8_base_products' needs compile_layers: true and mode: qlora (it computes "
                           "the NF4 base layers' products)")
    if cfg.offloaded_layers and not cfg.gradient_checkpointing:
        raise FireflyError("config key 'offloaded_layers' needs gradient_checkpointing: true (without it every layer "
                           "keeps its activations on the device)")
    model = load_base(weights or src.base, cfg.mode, dtype, device, cfg.attn_implementation)
    model.train()  # from_pretrained loads in eval mode: no dropout, and transformers checkpoints only in training
    n_rows = model.get_input_embeddings().weight.shape[0]
    if len(tokenizer) > n_rows:
        if cfg.mode != "full" and not src.train_embeddings:
            raise FireflyError(
                f"tokenizer {src.tokenizer} has {len(tokenizer)} tokens but the model has {n_rows} embedding "
                "rows: an expanded vocabulary must be trained, set train_embeddings: true")
        grow_vocabulary(model, tokenizer, src.base, cfg.embedding_init)
    gc_kwargs = {"use_reentrant": False}
    peft_upcast = cfg.mode == "qlora" and cfg.upcast_frozen_weights  # peft's kbit preparation, fp32 norms
    if peft_upcast:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=cfg.gradient_checkpointing,
                                                gradient_checkpointing_kwargs=gc_kwargs)
    else:
        if cfg.mode != "full":
            model.requires_grad_(False)  # the adapter (and modules_to_save) turn their own parameters back on
        if cfg.gradient_checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=gc_kwargs)
    if cfg.gradient_checkpointing:
        keep_activations(model, cfg.uncheckpointed_layers, cfg.offloaded_layers)
    if cfg.mode == "full":
        return model.to(device)
    from peft import PeftModel, get_peft_model

    adapter = adapter or src.adapter
    if adapter is not None:
        model = PeftModel.from_pretrained(model, str(adapter), is_trainable=True)
    else:
        model = get_peft_model(model, lora_config(model, cfg, src.train_embeddings))
    if not peft_upcast:
        master_weights_fp32(model, dtype)
    if cfg.lora.fuse_shared_inputs:
        fuse_shared_inputs(model)
    if cfg.compile_layers:
        compile_layers(model, eager_dropout=cfg.compile_eager_dropout, fp8_scaling=cfg.fp8_base_products)
    return model if cfg.mode == "qlora" else model.to(device)  # a 4-bit base is already on its device


def decoder_layers(model) -> list:
    from transformers.modeling_layers import GradientCheckpointingLayer

    return [m for m in model.modules() if isinstance(m, GradientCheckpointingLayer)]


def compile_layers(model, eager_dropout: bool, fp8_scaling: str) -> None:
    """torch.compile each decoder layer (with its LoRA branches): the norms, RoPE, activation, dropout, LoRA
    scaling, residual adds and casts between the matrix products become a few fused kernels instead of dozens
    of elementwise passes over the activations; the products themselves stay cuBLAS's and bitsandbytes'.

    A checkpointed layer keeps its checkpoint outside the compiled code: compiled inside it, the checkpoint is
    traced and the compiler keeps most activations instead of recomputing them (31 GiB instead of 11.5 at 7B,
    bench/NOTES.md). Every layer has the same code, so one compilation serves all (at the first step). A
    checkpointed layer's last base product (down_proj) runs outside its checkpoint, once (`last_product`).

    NF4 base layers dequantise from the compiled code (`nf4_linear`): the absmax in fused torch ops, the weight
    in bitsandbytes' kernel as one op, instead of through bitsandbytes' Python layers, the CPU cost that kept the
    GPU waiting.

    eager_dropout: the dropout masks come from PyTorch's eager kernel (inductor's `fallback_random`), so they are
    the ones an uncompiled run draws; inductor's own masks are drawn inside the fused kernels.

    fp8_scaling: "rowwise" or "tensorwise", the NF4 base layers' forward products in FP8 with those scales
    (`nf4_linear.fp8_product`); "none" keeps them in the compute dtype."""
    from functools import partial

    from firefly_train import last_product, nf4_linear

    nf4_linear.install(model, fp8_scaling=fp8_scaling)

    options = {"fallback_random": eager_dropout}
    compiled = {}

    def checkpointed(fn, *args):  # fn: transformers' partial(Layer.forward, layer, **kwargs)
        if fn.func not in compiled:
            compiled[fn.func] = torch.compile(fn.func, options=options)
        return last_product.checkpoint(partial(compiled[fn.func], *fn.args, **fn.keywords), fn.args[0], *args)

    layers = decoder_layers(model)
    if not layers:
        log.warning("compile_layers: the model has no transformers decoder layers (custom modelling code?); "
                    "nothing compiled")
    else:
        log.info("compile_layers: %d decoder layers compile at the first step (up to a minute or so)", len(layers))
    for layer in layers:
        if layer.gradient_checkpointing:
            last_product.install(layer)
            layer._gradient_checkpointing_func = checkpointed
        else:
            layer.compile(options=options)


def master_weights_fp32(model, dtype: torch.dtype) -> None:
    """Trained weights in fp32 (optimizer updates are lost in 16 bits), frozen ones left in the compute dtype,
    and the input embedding's output cast to it, so the residual stream and every activation stay 16-bit.

    peft's `prepare_model_for_kbit_training` instead upcasts every frozen 16-bit weight (the norms) to fp32;
    under autocast that makes the whole residual stream fp32, and each 4-bit linear casts its input down and
    its output back up: a fifth of a 7B QLoRA step's GPU time went to those casts (bench/NOTES.md)."""
    for p in model.parameters():
        if p.requires_grad and p.dtype != torch.float32:
            p.data = p.data.float()  # in place: tied embeddings stay one parameter
    if dtype != torch.float32:
        model.get_input_embeddings().register_forward_hook(lambda module, args, out: out.to(dtype))


def keep_activations(model, n: int, offloaded: int = 0) -> None:
    """Turn gradient checkpointing off for the last n decoder layers (transformers' per-layer switch), and for the
    first `offloaded` ones, whose activations `offload.OffloadedActivations` moves to host memory.

    transformers' own `every_n_layers` keeps no layer or at least half of them; a memory budget usually
    has room for a few layers, so the count is set here instead."""
    layers = decoder_layers(model)
    for key, count in (("uncheckpointed_layers", n), ("offloaded_layers", offloaded)):
        if count < 0 or count > len(layers):
            raise FireflyError(f"config key '{key}' must be between 0 and the model's {len(layers)} decoder "
                               f"layers, got {count}")
    if n + offloaded > len(layers):
        raise FireflyError(f"config keys 'uncheckpointed_layers' ({n}) and 'offloaded_layers' ({offloaded}) add up "
                           f"to more than the model's {len(layers)} decoder layers")
    for layer in layers[:offloaded] + layers[len(layers) - n:]:
        layer.gradient_checkpointing = False


def count_parameters(model) -> tuple[int, int]:
    """(trainable, total), counting 4-bit packed weights at their real size."""
    if hasattr(model, "get_nb_trainable_parameters"):
        return model.get_nb_trainable_parameters()
    total = sum(p.numel() for p in model.parameters())
    return sum(p.numel() for p in model.parameters() if p.requires_grad), total


def make_optimizer(name: str, params, lr: float, weight_decay: float, device: torch.device):
    if name == "adamw_torch":  # fused: one kernel launch for all parameters (on CUDA)
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=device.type == "cuda")
    if name == "adamw_8bit":  # bitsandbytes runs its 8-bit update on the CPU too (slowly)
        from firefly_train.adamw_8bit import AdamW8bit

        return AdamW8bit(params, lr=lr, weight_decay=weight_decay)
    if device.type != "cuda":
        raise FireflyError(f"optimizer {name} (bitsandbytes' paged state) needs a CUDA GPU; use optimizer: "
                           f"adamw_torch or adamw_8bit on {device.type}")
    import bitsandbytes as bnb

    cls = {"paged_adamw_8bit": bnb.optim.PagedAdamW8bit, "paged_adamw_32bit": bnb.optim.PagedAdamW32bit}[name]
    return cls(params, lr=lr, weight_decay=weight_decay)

