"""The chunked loss equals transformers' loss, value and gradients, for every allowed model type, and leaves
the model as it was; the trainer's 50-step loss curve is the same with the fast path on and off."""
import json
from pathlib import Path

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM

from firefly_train.chunked_loss import MODEL_TYPES, chunked_head_loss, supported
from firefly_train.cli import main

TINY = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
            vocab_size=97)
SAMPLES = Path(__file__).resolve().parents[2] / "samples"
EXTRA = {"gemma": {"head_dim": 8}, "qwen3": {"head_dim": 8}, "phi3": {"pad_token_id": 0},
         "mixtral": {"num_local_experts": 4},
         "qwen2_moe": {"num_experts": 4, "moe_intermediate_size": 16, "shared_expert_intermediate_size": 16}}


def tiny(model_type: str, **kwargs):
    torch.manual_seed(0)
    config = AutoConfig.for_model(model_type, **TINY, **EXTRA.get(model_type, {}), **kwargs)
    return AutoModelForCausalLM.from_config(config).float()


def batch():
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, 97, (3, 20), generator=g)
    labels = ids.clone()
    labels[0, :6] = -100  # a prompt
    labels[2, 15:] = -100  # padding
    return ids, labels


def loss_and_grads(model, chunk: int | None):
    ids, labels = batch()
    model.zero_grad(set_to_none=True)
    if chunk is None:
        loss = model(input_ids=ids, labels=labels).loss
    else:
        with chunked_head_loss(model, chunk):
            loss = model(input_ids=ids, labels=labels).loss
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def assert_same(model, chunk):
    want_loss, want_grads = loss_and_grads(model, None)
    loss, grads = loss_and_grads(model, chunk)
    torch.testing.assert_close(loss, want_loss, rtol=1e-6, atol=1e-6)
    assert grads.keys() == want_grads.keys() and grads
    for name in grads:
        torch.testing.assert_close(grads[name], want_grads[name], rtol=1e-5, atol=1e-6, msg=name)


@pytest.mark.parametrize("model_type", sorted(MODEL_TYPES))
def test_equals_transformers_loss_and_gradients(model_type):
    assert_same(tiny(model_type), chunk=7)  # 7 does not divide the 51 labelled positions


def test_peft_lora_with_trained_tied_embeddings_and_model_restored():
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(tiny("llama", tie_word_embeddings=True), LoraConfig(
        r=4, target_modules="all-linear", modules_to_save=["embed_tokens", "lm_head"], ensure_weight_tying=True))
    keys = list(model.state_dict())
    assert_same(model, chunk=16)
    assert list(model.state_dict()) == keys
    ids, _ = batch()
    assert model(input_ids=ids).logits.shape == (3, 20, 97)  # the head is itself again outside the block


def test_no_labelled_token_gives_a_zero_loss_with_a_graph():
    model = tiny("llama")
    ids, _ = batch()
    with chunked_head_loss(model, 8):
        loss = model(input_ids=ids, labels=torch.full_like(ids, -100)).loss
    loss.backward()
    assert loss.item() == 0.0


def test_other_model_types_are_refused():
    model = AutoModelForCausalLM.from_config(AutoConfig.for_model("gpt2", n_embd=32, n_layer=1, n_head=4,
                                                                  vocab_size=97))
    assert not supported(model)
    with pytest.raises(ValueError, match="gpt2"):
        with chunked_head_loss(model, 8):
            pass


def test_forward_without_labels_inside_the_block_is_an_error():
    model = tiny("llama")
    ids, _ = batch()
    with pytest.raises(RuntimeError, match="no loss"):
        with chunked_head_loss(model, 8):
            model(input_ids=ids)


def test_fast_path_loss_curve_equals_the_plain_one_over_50_steps(tiny_llama, tmp_path, monkeypatch):
    """The issue's numerical check, on the CPU in fp32: 50 QLoRA steps, same data and seed, with the chunked
    loss and an uncheckpointed layer against transformers' loss with every layer checkpointed."""
    from firefly_train import chunked_loss

    calls, real = [], chunked_loss.chunked_cross_entropy
    monkeypatch.setattr(chunked_loss, "chunked_cross_entropy", lambda *a, **k: calls.append(a[3]) or real(*a, **k))
    runs = {}
    for chunk, kept in ((0, 0), (37, 1)):
        out = tmp_path / f"chunk{chunk}"
        assert main(["pretrain", "--model", str(tiny_llama), "--data", str(SAMPLES / "pretrain_zh.jsonl"), "-o",
                     str(out), "--mode", "qlora", "--lora.r", "8", "--train_embeddings", "true", "--precision", "fp32",
                     "--max_seq_length", "64", "--micro_batch_size", "4", "--max_steps", "50", "--num_proc", "1",
                     "--learning_rate", "1e-2", "--save_steps", "1000", "--loss_chunk_tokens", str(chunk),
                     "--uncheckpointed_layers", str(kept)]) == 0
        runs[chunk] = [json.loads(line)["loss"] for line in (out / "loss.jsonl").read_text().splitlines()]
    assert len(runs[0]) == 50 and runs[0][-1] < runs[0][0] - 3  # it learns
    assert runs[37] == pytest.approx(runs[0], rel=1e-5)
    assert calls == [37] * 50  # only the fast run chunked, once per micro-batch


@pytest.mark.gpu
def test_bf16_on_cuda_within_bf16_noise_of_transformers_loss():
    model = tiny("llama").to("cuda", torch.bfloat16)
    ids, labels = batch()
    ids, labels = ids.cuda(), labels.cuda()
    want = model(input_ids=ids, labels=labels).loss
    with chunked_head_loss(model, 16):
        got = model(input_ids=ids, labels=labels).loss
    torch.testing.assert_close(got.float(), want.float(), rtol=2e-2, atol=2e-2)
