"""last_product: a checkpointed, compiled decoder layer computes its down_proj base product once, outside the
checkpoint, with the gradients of a layer that keeps its activations."""
import torch
from torch.profiler import profile

from firefly_train import last_product

IDS = torch.arange(1, 33).view(2, 16)


def _step(model) -> torch.Tensor:
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = model(input_ids=IDS, labels=IDS).loss
    loss.backward()
    return loss.detach().float()


def _down_shaped_products(model) -> int:
    """Matrix products of one step shaped [tokens, intermediate] x [intermediate, hidden]: the down_proj base
    product, and the input gradients of gate_proj and up_proj (the same count on every path)."""
    cfg = model.config
    shape = [[IDS.numel(), cfg.intermediate_size], [cfg.intermediate_size, cfg.hidden_size]]
    _step(model)  # compiles
    with profile(record_shapes=True) as prof:
        _step(model)
    return sum(e.name == "aten::mm" and e.input_shapes[:2] == shape for e in prof.events())


# A LoRA down-projection of rank 64 would have the base product's shape here; without dropout the gradients of
# a checkpointed and a kept layer can be compared. Both tests build the same models, so they compile once.
SETTINGS = {"lora.r": 8, "lora.dropout": 0.0}


def test_a_checkpointed_layer_runs_its_down_product_once(qlora):
    kept = _down_shaped_products(qlora(compile_layers=True, uncheckpointed_layers=2, **SETTINGS))
    checkpointed = qlora(compile_layers=True, **SETTINGS)
    assert all(layer.gradient_checkpointing for layer in checkpointed.get_base_model().model.layers)
    assert _down_shaped_products(checkpointed) == kept
    assert _down_shaped_products(qlora(**SETTINGS)) == kept + 2  # eager checkpoints recompute it (2 layers)


def _trained_adapter(model):
    """The model with its LoRA B matrices off zero (as after some training), so the LoRA branch of down_proj
    contributes to the output."""
    torch.manual_seed(1)
    for name, p in model.named_parameters():
        if "lora_B" in name:
            p.data.normal_(0, 0.05)
    return model


def test_gradients_match_a_kept_layer_and_eval_is_untouched(qlora):
    checkpointed = _trained_adapter(qlora(compile_layers=True, **SETTINGS))
    kept = _trained_adapter(qlora(compile_layers=True, uncheckpointed_layers=2, **SETTINGS))
    loss, loss_kept = _step(checkpointed), _step(kept)
    torch.testing.assert_close(loss, loss_kept, rtol=1e-2, atol=0)  # the residual add rounds in another order
    want = {n: p.grad for n, p in kept.named_parameters() if p.grad is not None}
    got = {n: p.grad for n, p in checkpointed.named_parameters() if p.grad is not None}
    assert got.keys() == want.keys() and any("down_proj.lora_A" in n for n in got)
    for n, g in want.items():
        torch.testing.assert_close(got[n], g, rtol=5e-2, atol=5e-2 * g.abs().max().item(), msg=n)
    bases = [layer._last_base for layer in checkpointed.get_base_model().model.layers]
    assert all(base._handoff is None for base in bases)  # reset after the recompute, which stops early
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):  # outside a checkpoint (evaluation,
        logits = checkpointed.eval()(input_ids=IDS).logits  # generation) the product is back in the layer
        torch.testing.assert_close(logits, kept.eval()(input_ids=IDS).logits, rtol=2e-2, atol=2e-2)


def test_other_layers_are_checkpointed_whole():
    class Block(torch.nn.Module):  # a down_proj, but not a decoder layer of a known shape
        def __init__(self):
            super().__init__()
            self.mlp = torch.nn.Module()
            self.mlp.down_proj = torch.nn.Linear(4, 4)

        def forward(self, x):
            return x + self.mlp.down_proj(x)

    block = Block()
    assert not last_product.install(block)
    x = torch.randn(3, 4, requires_grad=True)
    last_product.checkpoint(block, block, x).sum().backward()
    torch.testing.assert_close(x.grad, 1 + block.mlp.down_proj.weight.sum(0).expand(3, 4))
