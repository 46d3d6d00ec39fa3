"""The fused LoRA path: with dropout 0 the same losses and gradients as peft's own forward (q/k/v and gate/up
share one down-projection, every branch added in one addmm); with dropout, one mask per shared input; the saved
adapter is peft's."""
import pytest
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


def test_one_dropout_mask_per_shared_input(tiny_llama, monkeypatch):
    def dropout_calls(model):
        calls = []
        hooks = [m.register_forward_hook(lambda mod, args, out, name=name: calls.append(name))
                 for name, m in model.named_modules() if name.endswith("lora_dropout.default")]
        _loss_and_grads(model)
        for h in hooks:
            h.remove()
        return calls

    assert len(dropout_calls(_lora(tiny_llama, dropout=0.1))) == 2 * 7
    from firefly_train import fused_lora

    masks = []
    draw = fused_lora.keep_bits
    monkeypatch.setattr(fused_lora, "keep_bits", lambda x, drop: masks.append(x.shape) or draw(x, drop))
    fused = _lora(tiny_llama, dropout=0.1)
    fuse_shared_inputs(fused)
    assert not dropout_calls(fused)  # the masks are drawn as such, not by peft's dropout modules
    hidden, inner = fused.config.hidden_size, fused.config.intermediate_size
    assert sorted(m[-1] for m in masks) == sorted([hidden] * 3 * 2 + [inner] * 2)  # per layer: q/k/v, o, gate/up, down
    loss, grads = _loss_and_grads(fused)
    assert torch.isfinite(loss) and all(torch.isfinite(g).all() for g in grads.values())


def test_dropped_down_projection_has_the_gradients_of_dropout_then_linear():
    """`_DroppedDown` rebuilds dropout(x) in the backward from x and the packed mask: the same output and gradients
    as `F.linear(x * mask / (1 - p), A)` through autograd with that mask, bit for bit (bf16, as under autocast)."""
    from firefly_train.fused_lora import MASK_RESOLUTION, _DroppedDown, keep_bits, unpack_bits

    x = torch.randn(2, 8, 32, dtype=torch.bfloat16, requires_grad=True)
    a = torch.randn(12, 32, requires_grad=True)
    grad = torch.randn(2, 8, 12, dtype=torch.bfloat16)
    packed = keep_bits(x, MASK_RESOLUTION // 4)
    keep = unpack_bits(packed).bool()
    out = _DroppedDown.apply(x, packed, a, 1 / 0.75)
    out.backward(grad)
    x2, a2 = x.detach().clone().requires_grad_(), a.detach().clone().requires_grad_()
    want = torch.nn.functional.linear(x2 * keep * (1 / 0.75), a2.to(torch.bfloat16))
    want.backward(grad)
    assert 0.6 < keep.float().mean() < 0.9
    assert torch.equal(out, want) and torch.equal(x.grad, x2.grad) and torch.equal(a.grad, a2.grad)
    assert a.grad.dtype == torch.float32


def test_a_compiled_layer_keeps_only_the_masks_for_its_dropout(qlora):
    """What dropout adds to a kept compiled layer's saved tensors is its masks, one bit an element: the dropped
    inputs are rebuilt in the backward, not kept (nn.Dropout's kernel output was kept beside the input). Without
    dropout the layer keeps the inputs of the LoRA products instead (the compiler never recomputes a product's
    input), so with it the rest is smaller."""
    def saved_bytes(dropout):
        model = qlora(compile_layers=True, uncheckpointed_layers=2,
                      **{"lora.dropout": dropout, "lora.fuse_shared_inputs": True})
        layers = model.get_base_model().model.layers
        inside, saved = [False], {}
        for layer in layers:
            layer.register_forward_pre_hook(lambda *a: inside.__setitem__(0, True))
            layer.register_forward_hook(lambda *a: inside.__setitem__(0, False))

        def pack(t):
            if inside[0] and t.dim() > 1 and (tuple(t.shape[:2]) == (2, 16) or t.shape[0] == 32):  # per token
                saved[t.untyped_storage().data_ptr()] = (t.untyped_storage().nbytes(), t.dtype)
            return t

        ids = torch.arange(1, 33).view(2, 16)  # test_lora's shapes and dropout: its compiled layers serve here too
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), \
                torch.autocast("cpu", dtype=torch.bfloat16):
            model(input_ids=ids, labels=ids).loss.backward()
        return (sum(n for n, d in saved.values() if d != torch.uint8),
                sum(n for n, d in saved.values() if d == torch.uint8))

    cfg = qlora().config
    masks = 2 * 32 * (3 * cfg.hidden_size + cfg.intermediate_size) // 8  # 2 layers, 32 tokens, 4 dropout sites a layer
    (with_dropout, mask_bytes), (without, no_masks) = saved_bytes(0.3), saved_bytes(0.0)
    assert (mask_bytes, no_masks) == (masks, 0) and with_dropout < without


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


def test_the_masks_drop_their_share_and_unpack_the_same_both_ways():
    """`keep_bits` packs bit j of byte i as element 8i + j, from the two 12-bit fields of each uniform float32 value
    times 2**24 (low first); both unpackings give the same mask, and about the share asked is dropped."""
    from firefly_train.fused_lora import MASK_RESOLUTION, keep_bits, unpack_bits

    torch.manual_seed(0)
    drawn = (torch.rand(1, 2, 4) * (1 << 24)).to(torch.int32)
    torch.manual_seed(0)
    packed = keep_bits(torch.zeros(1, 16), MASK_RESOLUTION // 2)
    fields = [f for v in drawn.flatten().tolist() for f in (v & 0xFFF, v >> 12)]
    assert unpack_bits(packed).tolist() == [[int(f >= MASK_RESOLUTION // 2) for f in fields]]
    packed = keep_bits(torch.zeros(64, 4096), round(0.05 * MASK_RESOLUTION))
    assert packed.shape == (64, 512) and packed.dtype == torch.uint8
    keep = unpack_bits(packed)
    assert torch.equal(keep, unpack_bits(packed, for_backward=True))
    assert abs(1 - keep.float().mean().item() - 0.05) < 0.002  # 262,144 draws: 5 standard deviations


@pytest.mark.gpu
def test_on_cuda_the_masks_drop_their_share_and_compile_to_the_eager_draw():
    """On a GPU (`mask_kernel`'s Philox): about the share asked is dropped; compiled with `fallback_random` the mask
    is the eager one for the same generator state, and with inductor's own random seed the same state gives the same
    mask again (what a checkpointed layer's recompute needs)."""
    from firefly_train.fused_lora import MASK_RESOLUTION, keep_bits, unpack_bits

    x, drop = torch.zeros(8192, 5120, device="cuda"), round(0.05 * MASK_RESOLUTION)
    torch.manual_seed(0)
    eager = keep_bits(x, drop)
    torch.manual_seed(0)
    compiled = torch.compile(keep_bits, options={"fallback_random": True})(x, drop)
    assert torch.equal(compiled, eager)
    inductor_seed = torch.compile(keep_bits, options={"fallback_random": False})
    torch.manual_seed(1)
    first = inductor_seed(x, drop)
    torch.manual_seed(1)
    assert torch.equal(inductor_seed(x, drop), first) and not torch.equal(first, eager)
    assert abs(1 - unpack_bits(eager).float().mean().item() - drop / MASK_RESOLUTION) < 1e-4  # 42 M draws
