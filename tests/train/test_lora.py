"""Selective checkpointing: the last N decoder layers skip the recompute, gradients unchanged; the config
keys reach the loaded model."""
import pytest
import torch
from transformers import AutoModelForCausalLM

from firefly_core.errors import FireflyError
from firefly_core.models import load_tokenizer
from firefly_train.config import load_config
from firefly_train.lora import build_model, keep_activations, resolve_sources
from firefly_train.train_config import PretrainConfig


def _mlp_calls_and_grads(model):
    calls = [0] * len(model.model.layers)
    # a pre-hook: torch stops a recompute once it has what backward needs, before the mlp's forward returns
    hooks = [layer.mlp.register_forward_pre_hook(lambda *_, k=k: calls.__setitem__(k, calls[k] + 1))
             for k, layer in enumerate(model.model.layers)]
    ids = torch.arange(1, 17).view(2, 8)
    model.zero_grad(set_to_none=True)
    model(input_ids=ids, labels=ids).loss.backward()
    for h in hooks:
        h.remove()
    return calls, {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_last_layers_are_not_recomputed_and_gradients_are_unchanged(tiny_llama):
    model = AutoModelForCausalLM.from_pretrained(tiny_llama, dtype=torch.float32).train()
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    all_calls, want = _mlp_calls_and_grads(model)
    keep_activations(model, 1)
    calls, grads = _mlp_calls_and_grads(model)
    assert all_calls == [2, 2] and calls == [2, 1]  # forward + recompute, forward only
    for name in want:
        torch.testing.assert_close(grads[name], want[name], rtol=0, atol=0, msg=name)
    with pytest.raises(FireflyError, match="between 0 and the model's 2"):
        keep_activations(model, 3)


def test_config_key_reaches_the_qlora_model(tiny_llama):
    cfg = load_config(PretrainConfig, None, {"model": str(tiny_llama), "mode": "qlora", "precision": "fp32",
                                              "uncheckpointed_layers": 1, "attn_implementation": "eager"})
    src = resolve_sources(cfg)
    model = build_model(cfg, src, load_tokenizer(src.tokenizer), torch.device("cpu"), torch.float32)
    layers = model.get_base_model().model.layers
    assert [layer.gradient_checkpointing for layer in layers] == [True, False]
    assert model.config._attn_implementation == "eager"
