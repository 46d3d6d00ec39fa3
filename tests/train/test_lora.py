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
    assert all(m.training for m in model.modules())  # from_pretrained loads in eval mode: no checkpoint, no dropout
    assert model.config._attn_implementation == "eager"


def _autocast_step(model):
    """Loss and the dtype of the residual stream entering the first decoder layer, under bf16 autocast (what
    accelerate's mixed precision wraps the forward in)."""
    seen = []
    layer = model.get_base_model().model.layers[0]
    hook = layer.register_forward_pre_hook(
        lambda m, args, kwargs: seen.append((args[0] if args else kwargs["hidden_states"]).dtype), with_kwargs=True)
    ids = torch.arange(1, 33).view(2, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    hook.remove()
    return loss.detach().float(), seen[0]


def test_frozen_weights_stay_16_bit_and_trained_ones_are_fp32_masters(qlora):
    """The default: norms stay bf16, every trained parameter (LoRA, embeddings) is fp32, the residual stream is
    bf16; peft's prepare_model_for_kbit_training (upcast_frozen_weights) makes norms and residual stream fp32.
    Same loss within bf16 rounding, and both train the adapter and the embeddings."""
    fast, upcast = qlora(), qlora(upcast_frozen_weights=True)
    for model, norm_dtype in ((fast, torch.bfloat16), (upcast, torch.float32)):
        assert model.get_base_model().model.layers[0].input_layernorm.weight.dtype == norm_dtype
        trained = {n: p for n, p in model.named_parameters() if p.requires_grad}
        assert all(p.dtype == torch.float32 for p in trained.values())
        assert any("lora_A" in n for n in trained) and any("embed_tokens" in n for n in trained)
    (loss, stream), (loss_up, stream_up) = _autocast_step(fast), _autocast_step(upcast)
    assert (stream, stream_up) == (torch.bfloat16, torch.float32)
    torch.testing.assert_close(loss, loss_up, rtol=2e-2, atol=0)
    for model in (fast, upcast):
        grads = {n: p.grad for n, p in model.named_parameters() if p.requires_grad}
        assert all(g is not None and g.dtype == torch.float32 and g.abs().sum() > 0
                   for n, g in grads.items() if "lora_B" in n or "embed_tokens" in n)


def _compiled_forwards(model) -> int:
    """Runs of a compiled layer's forward in one training step (after a first one that compiles): one per layer,
    and one more for each checkpointed layer's recomputation in backward."""
    from torch.profiler import profile

    _autocast_step(model)
    with profile() as prof:
        _autocast_step(model)
    return sum(e.name == "CompiledFunction" for e in prof.events())


def test_compiled_layers_train_like_eager_ones_and_still_recompute(qlora):
    """compile_layers: each decoder layer (4-bit linears, LoRA branches) compiles whole, loss and gradients
    match the eager model's within bf16 rounding, and a checkpointed layer is still recomputed in backward
    (its checkpoint stays outside the compiled code) while an uncheckpointed one is not."""
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    eager = qlora(**{"lora.dropout": 0.0})
    compiled = qlora(compile_layers=True, **{"lora.dropout": 0.0})
    (loss, _), (loss_c, _) = _autocast_step(eager), _autocast_step(compiled)
    assert not counters["graph_break"], dict(counters["graph_break"])
    assert counters["stats"]["unique_graphs"] >= 1
    torch.testing.assert_close(loss_c, loss, rtol=1e-2, atol=0)
    grads = {n: p.grad for n, p in eager.named_parameters() if p.grad is not None}
    for n, p in compiled.named_parameters():
        if n in grads:
            torch.testing.assert_close(p.grad, grads[n], rtol=5e-2, atol=5e-2 * grads[n].abs().max().item(), msg=n)
    assert _compiled_forwards(compiled) == 2 * 2  # 2 layers: forward and recompute
    assert _compiled_forwards(qlora(compile_layers=True, uncheckpointed_layers=1)) == 2 + 1


@pytest.mark.parametrize("fused", [False, True])
def test_compiled_recompute_draws_the_same_dropout_masks(qlora, fused):
    """A checkpointed compiled layer recomputes its forward in backward; its LoRA dropout masks must be the ones of
    the forward (the checkpoint restores the RNG state), so gradients equal those of the same layers kept
    uncheckpointed. With lora.fuse_shared_inputs the shared masks and down-projections compile too."""
    def grads(seed, uncheckpointed):
        model = qlora(compile_layers=True, uncheckpointed_layers=uncheckpointed,
                       **{"lora.dropout": 0.3, "lora.fuse_shared_inputs": fused})
        torch.manual_seed(seed)
        _autocast_step(model)
        return {n: p.grad for n, p in model.named_parameters() if p.grad is not None}

    recomputed, kept, other_masks = grads(123, 0), grads(123, 2), grads(124, 2)
    for n in kept:
        torch.testing.assert_close(recomputed[n], kept[n], rtol=0, atol=0, msg=n)
    assert any(not torch.equal(kept[n], other_masks[n]) for n in kept if "lora_B" in n)  # the masks matter


def _relative_grad_error(model, reference) -> float:
    """Largest relative error over the lora_B gradients (lora_A's are 0 while B is 0, at initialisation)."""
    want = {n: p.grad for n, p in reference.named_parameters() if p.grad is not None and "lora_B" in n}
    got = {n: p.grad for n, p in model.named_parameters() if n in want}
    return max(((got[n] - want[n]).norm() / want[n].norm()).item() for n in want)


@pytest.mark.parametrize("fused", [False, True])
def test_eager_dropout_draws_the_uncompiled_masks(qlora, fused):
    """compile_eager_dropout: the compiled layers take their dropout masks from PyTorch's eager kernel, so one
    step's LoRA gradients equal the uncompiled model's within bf16 rounding (0.009 relative; both models
    checkpoint their layers, so the recompute draws them too); inductor's own masks are other draws (0.85).
    With lora.fuse_shared_inputs (the recipes) the shared masks too."""
    def step(**overrides):
        model = qlora(**{"lora.dropout": 0.3, "lora.fuse_shared_inputs": fused, **overrides})
        torch.manual_seed(7)
        _autocast_step(model)
        return model

    uncompiled = step()
    eager_masks = _relative_grad_error(step(compile_layers=True, compile_eager_dropout=True), uncompiled)
    inductor_masks = _relative_grad_error(step(compile_layers=True), uncompiled)
    assert eager_masks < 0.05 < 0.3 < inductor_masks, (eager_masks, inductor_masks)
