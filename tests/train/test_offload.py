"""offload: the first layers' saved tensors leave for host memory in the forward and come back before their backward
asks for them, with the same losses and gradients as keeping them; strides survive the trip; the config key and
`plan` count the layers."""
import contextlib

import pytest
import torch

from firefly_core.errors import FireflyError
from firefly_train.lora import decoder_layers
from firefly_train.offload import OffloadedActivations


def _step(model, offload=None):
    ids = torch.arange(1, 33).view(2, 16)
    torch.manual_seed(7)  # the same dropout masks in every run
    with torch.autocast("cpu", dtype=torch.bfloat16), offload or contextlib.nullcontext():
        loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    return loss.detach(), {n: p.grad for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("compiled", [False, True])
def test_offloaded_layers_train_exactly_like_kept_ones(qlora, compiled):
    """Layer 0 offloaded and layer 1 kept against both kept: bit for bit the same loss and gradients, something went
    to host memory, and every tensor was back before autograd asked for it (brought back by layer 1's output
    gradient). Compiled, the module hooks that mark layer 0 still mark its saved tensors, and split no graph."""
    from torch._dynamo.utils import counters

    overrides = {"compile_layers": compiled, "lora.dropout": 0.3, "lora.fuse_shared_inputs": True}  # as test_lora's
    want_loss, want = _step(qlora(uncheckpointed_layers=2, **overrides))
    counters.clear()
    model = qlora(uncheckpointed_layers=1, offloaded_layers=1, **overrides)
    assert [layer.gradient_checkpointing for layer in decoder_layers(model)] == [False, False]
    offload = OffloadedActivations(decoder_layers(model), 1, min_bytes=0)
    for _ in range(2):  # twice: the second step starts from a clean state
        loss, grads = _step(model, offload)
        assert offload.offloaded_bytes > 0 and offload.late == 0 and offload.saved == {}
        assert torch.equal(loss, want_loss) and grads.keys() == want.keys()
        for name in want:
            assert torch.equal(grads[name], want[name]), name
        model.zero_grad(set_to_none=True)
    assert not counters["graph_break"], dict(counters["graph_break"])  # the hooks split no compiled layer


def test_a_strided_tensor_comes_back_with_its_strides_and_views_stay():
    layer = torch.nn.Linear(4, 4)
    offload = OffloadedActivations([layer], 1, min_bytes=0)
    offload.current = 0
    strided = torch.randn(4, 3).t()  # owns its storage, not contiguous
    entry = offload._pack(strided)
    back = offload._unpack(entry)
    assert back.stride() == strided.stride() and torch.equal(back, strided) and offload.late == 1
    view = torch.randn(8, 4)[2:]
    assert offload._pack(view) is view
    assert offload._pack(layer.weight) is layer.weight
    offload.current = None
    assert offload._pack(strided) is strided


def test_the_config_keys_are_checked(qlora):
    with pytest.raises(FireflyError, match="'uncheckpointed_layers' .1. and 'offloaded_layers' .2."):
        qlora(uncheckpointed_layers=1, offloaded_layers=2)
    with pytest.raises(FireflyError, match="'offloaded_layers' needs gradient_checkpointing"):
        qlora(offloaded_layers=1, gradient_checkpointing=False)


@pytest.mark.gpu
def test_on_cuda_the_copies_overlap_and_train_exactly_like_kept_layers():
    """A 6-layer bf16 Llama on a GPU, the first 3 layers offloaded: the side stream's copies give the gradients of
    keeping everything (up to the GPU's own run-to-run rounding), with nothing asked for before it was brought
    back. A copy read before it lands would give garbage, far outside that."""
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=512, hidden_size=256, intermediate_size=512, num_hidden_layers=6,
                      num_attention_heads=4, num_key_value_heads=4, attn_implementation="eager")
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg).to("cuda", torch.bfloat16).train()
    ids = torch.randint(0, 512, (4, 128), device="cuda")

    def step(offload=None):
        model.zero_grad(set_to_none=True)
        with offload or contextlib.nullcontext():
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}

    want_loss, want = step()
    offload = OffloadedActivations(decoder_layers(model), 3, min_bytes=1 << 16)
    loss, grads = step(offload)
    assert offload.offloaded_bytes > 3 * 4 * 128 * 256 * 2 and offload.late == 0 and offload.saved == {}
    torch.testing.assert_close(loss, want_loss, rtol=1e-3, atol=0)
    for n in want:
        torch.testing.assert_close(grads[n], want[n], rtol=2e-2, atol=2e-2 * want[n].abs().max().item(), msg=n)
