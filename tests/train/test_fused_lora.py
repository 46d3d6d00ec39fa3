"""The fused LoRA path: with dropout 0 the same losses and gradients as peft's own forward (q/k/v and gate/up
share one down-projection, every branch added in one addmm); with dropout, one mask per shared input; the saved
adapter is peft's."""
import torch
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import AutoModelForCausalLM

from firefly_train.fused_lora import fuse_shared_inputs


def _lora(tiny_llama, dropout=0.0, seed=0):
    model = AutoModelForCausalLM.from_pretrained(tiny_llama, dtype=torch.float32)
    torch.manual_seed(seed)
    model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, lora_dropout=dropout, target_modules="all-linear",
                                             init_lora_weights=False))  # B != 0: the branches count
    return model.train()


def _loss_and_grads(model, checkpointing=False):
    if checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    ids = torch.arange(1, 33).view(2, 16)
    model.zero_grad(set_to_none=True)
    loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_same_loss_and_gradients_as_peft_without_dropout(tiny_llama):
    for checkpointing in (False, True):
        want_loss, want = _loss_and_grads(_lora(tiny_llama), checkpointing)
        fused = _lora(tiny_llama)
        assert fuse_shared_inputs(fused) == {"grouped": 2 * 5, "alone": 2 * 2}  # per layer: q,k,v + gate,up; o, down
        loss, grads = _loss_and_grads(fused, checkpointing)
        torch.testing.assert_close(loss, want_loss, rtol=1e-6, atol=1e-6)
        assert grads.keys() == want.keys() and len(grads) == 2 * 7 * 2
        for name in want:
            torch.testing.assert_close(grads[name], want[name], rtol=1e-5, atol=1e-6, msg=name)


def test_one_dropout_mask_per_shared_input(tiny_llama):
    def dropout_calls(model):
        calls = []
        hooks = [m.register_forward_hook(lambda mod, args, out, name=name: calls.append(name))
                 for name, m in model.named_modules() if name.endswith("lora_dropout.default")]
        _loss_and_grads(model)
        for h in hooks:
            h.remove()
        return calls

    assert len(dropout_calls(_lora(tiny_llama, dropout=0.1))) == 2 * 7
    fused = _lora(tiny_llama, dropout=0.1)
    fuse_shared_inputs(fused)
    calls = dropout_calls(fused)
    assert len(calls) == 2 * 4 and sum(".q_proj." in c for c in calls) == 2 and not any(".k_proj." in c for c in calls)
    loss, grads = _loss_and_grads(fused)
    assert torch.isfinite(loss) and all(torch.isfinite(g).all() for g in grads.values())


def test_the_saved_adapter_is_peft_s_and_a_merged_or_disabled_adapter_falls_back(tiny_llama, tmp_path):
    model = _lora(tiny_llama).eval()
    ids = torch.arange(1, 17).view(1, 16)
    want = model(input_ids=ids).logits
    fuse_shared_inputs(model)
    torch.testing.assert_close(model(input_ids=ids).logits, want, rtol=1e-5, atol=1e-5)
    with model.disable_adapter():
        base = model(input_ids=ids).logits
    assert not torch.allclose(base, want)
    model.save_pretrained(tmp_path / "adapter")
    plain = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_llama, dtype=torch.float32),
                                      tmp_path / "adapter").eval()
    torch.testing.assert_close(plain(input_ids=ids).logits, want, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(model.merge_and_unload()(input_ids=ids).logits, want, rtol=1e-4, atol=1e-4)


def test_config_key_fuses_the_qlora_model_with_the_same_loss(tiny_llama):
    from firefly_core.models import load_tokenizer
    from firefly_train.config import load_config
    from firefly_train.lora import build_model, resolve_sources
    from firefly_train.train_config import PretrainConfig

    losses = []
    for fused in (False, True):
        cfg = load_config(PretrainConfig, None, {"model": str(tiny_llama), "mode": "qlora", "precision": "fp32",
                                                  "lora.dropout": 0.0, "lora.fuse_shared_inputs": fused})
        src = resolve_sources(cfg)
        torch.manual_seed(0)
        model = build_model(cfg, src, load_tokenizer(src.tokenizer), torch.device("cpu"), torch.float32).train()
        q = model.get_base_model().model.layers[0].self_attn.q_proj
        assert (getattr(q, "_fused_group", None) is not None) == fused
        losses.append(_loss_and_grads(model)[0])
    torch.testing.assert_close(losses[1], losses[0], rtol=1e-6, atol=1e-6)
