"""attn_implementation 'varlen': packed conversations attend only within themselves, padding is dropped; logits
and gradients equal those of each conversation run alone through sdpa (on the CPU the segments go through sdpa one
by one; on a CUDA GPU through torch's varlen FlashAttention)."""
import torch
from transformers import AutoModelForCausalLM

import firefly_train.varlen_attention  # noqa: F401  (registers 'varlen')
from firefly_train.varlen_attention import segments


def test_segments_start_where_positions_restart_and_skip_padding():
    pos = torch.tensor([[0, 1, 2, 0, 1, 0]])
    index, cu, longest = segments(pos, torch.ones(1, 6, dtype=torch.bool))
    assert index is None and cu.tolist() == [0, 3, 5, 6] and longest == 3
    valid = torch.tensor([[1, 1, 1, 0], [0, 1, 1, 1]], dtype=torch.bool)  # right and left padding
    index, cu, longest = segments(None, valid)
    assert index.tolist() == [0, 1, 2, 5, 6, 7] and cu.tolist() == [0, 3, 6] and longest == 3


def _model(tiny_llama, attn):
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_pretrained(tiny_llama, dtype=torch.float32, attn_implementation=attn)


def test_packed_row_equals_each_conversation_alone(tiny_llama):
    lengths = [5, 9, 3]
    convs = [torch.randint(5, 200, (n,), generator=torch.Generator().manual_seed(n)) for n in lengths]
    ids = torch.cat(convs)[None]
    pos = torch.cat([torch.arange(n) for n in lengths])[None]
    packed = _model(tiny_llama, "varlen")
    logits = packed(input_ids=ids, position_ids=pos, use_cache=False).logits[0]
    alone = _model(tiny_llama, "sdpa")
    want = torch.cat([alone(input_ids=c[None]).logits[0] for c in convs])
    torch.testing.assert_close(logits, want, rtol=1e-5, atol=1e-5)

    packed(input_ids=ids, position_ids=pos, labels=ids, use_cache=False).loss.backward()
    alone(input_ids=ids, position_ids=pos, labels=ids, use_cache=False).loss.backward()  # sdpa: block-diagonal mask
    for (name, p), (_, q) in zip(packed.named_parameters(), alone.named_parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-6, msg=name)


def test_padded_batch_equals_sdpa(tiny_llama):
    ids = torch.randint(5, 200, (2, 7), generator=torch.Generator().manual_seed(1))
    mask = torch.tensor([[1] * 7, [1] * 4 + [0] * 3])
    got = _model(tiny_llama, "varlen")(input_ids=ids, attention_mask=mask).logits
    want = _model(tiny_llama, "sdpa")(input_ids=ids, attention_mask=mask).logits
    torch.testing.assert_close(got[0], want[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got[1, :4], want[1, :4], rtol=1e-5, atol=1e-5)


def test_config_key_reaches_the_model(tiny_llama):
    from firefly_core.models import load_tokenizer
    from firefly_train.config import load_config
    from firefly_train.lora import build_model, resolve_sources
    from firefly_train.train_config import SftConfig

    cfg = load_config(SftConfig, None, {"model": str(tiny_llama), "mode": "lora", "precision": "fp32",
                                         "attn_implementation": "varlen"})
    src = resolve_sources(cfg)
    model = build_model(cfg, src, load_tokenizer(src.tokenizer), torch.device("cpu"), torch.float32)
    assert model.config._attn_implementation == "varlen"


def test_segments_are_computed_once_per_forward(tiny_llama, monkeypatch):
    """Every layer of a forward (2 here) shares one segment computation; a new forward with new position ids, or
    the same tensor changed in place, computes them again."""
    import firefly_train.varlen_attention as varlen

    calls = []
    real = varlen.segments
    monkeypatch.setattr(varlen, "segments", lambda *a: calls.append(1) or real(*a))
    model = _model(tiny_llama, "varlen")
    ids = torch.randint(5, 200, (1, 8), generator=torch.Generator().manual_seed(2))
    pos = torch.tensor([[0, 1, 2, 3, 0, 1, 2, 3]])
    first = model(input_ids=ids, position_ids=pos, use_cache=False).logits
    assert len(calls) == 1 and model.config.num_hidden_layers == 2
    pos[0, 4:] = torch.arange(4, 8)  # one conversation now: in place, same tensor
    second = model(input_ids=ids, position_ids=pos, use_cache=False).logits
    assert len(calls) == 2
    want = _model(tiny_llama, "sdpa")(input_ids=ids).logits
    torch.testing.assert_close(second, want, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(first, second)
