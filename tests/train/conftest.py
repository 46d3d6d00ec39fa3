"""Fixtures of the training tests."""
import pytest
import torch

from firefly_core.models import load_tokenizer
from firefly_train.config import load_config
from firefly_train.lora import build_model, resolve_sources
from firefly_train.train_config import PretrainConfig


@pytest.fixture
def qlora(tiny_llama):
    """Builds the tiny Llama as firefly-train does for QLoRA in bf16 on the CPU; keyword
    arguments are config overrides (dotted keys as on the command line)."""
    def build(**overrides):
        cfg = load_config(PretrainConfig, None, {"model": str(tiny_llama), "mode": "qlora", "precision": "bf16",
                                                  "train_embeddings": True, "attn_implementation": "eager",
                                                  **overrides})
        src = resolve_sources(cfg)
        torch.manual_seed(0)
        return build_model(cfg, src, load_tokenizer(src.tokenizer), torch.device("cpu"), torch.bfloat16)

    return build
