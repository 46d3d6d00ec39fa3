"""Shared fixtures: the embedded model, a tiny random Llama for fast tests, and ../shared/data."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
REPO = Path(__file__).resolve().parent.parent
os.environ.setdefault("FIREFLY_CACHE", str(REPO / ".cache" / "firefly"))


def shared_data_dir() -> Path | None:
    path = Path(os.environ.get("FIREFLY_SHARED_DATA", REPO.parent / "shared" / "data"))
    return path if path.is_dir() else None


def pytest_collection_modifyitems(config, items):
    import torch

    data = shared_data_dir()
    for item in items:
        if "shared_data" in item.keywords and data is None:
            item.add_marker(pytest.mark.skip(reason="../shared/data not present"))
        if "gpu" in item.keywords and not torch.cuda.is_available():
            item.add_marker(pytest.mark.skip(reason="no CUDA GPU"))
        if "browser" in item.keywords and not shutil.which("chromium"):
            item.add_marker(pytest.mark.skip(reason="Debian chromium not installed"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    path = shared_data_dir()
    if path is None:
        pytest.skip("../shared/data not present")
    return path


@pytest.fixture(scope="session")
def smollm2() -> Path:
    """The embedded default model as a local HF folder (converted once, cached under .cache/)."""
    from firefly_core.models import resolve_model

    return resolve_model("smollm2-135m")


@pytest.fixture(scope="session")
def tiny_llama(smollm2, tmp_path_factory) -> Path:
    """A 2-layer, 64-wide random Llama with SmolLM2's real tokenizer: fast enough for unit tests."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    out = tmp_path_factory.mktemp("tiny_llama")
    tok = AutoTokenizer.from_pretrained(smollm2)
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                      tie_word_embeddings=True, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    LlamaForCausalLM(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return out
