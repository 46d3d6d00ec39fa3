"""attn_implementation 'varlen': packed conversations attend only within themselves, padding is dropped; logits
and gradients equal those of each conversation run alone through sdpa (on the CPU the segments go through sdpa one
by one; on a CUDA GPU through torch's varlen FlashAttention)."""
import pytest
import torch
from transformers import AutoModelForCausalLM

import firefly_train.varlen_attention as varlen
from firefly_core.errors import FireflyError
from firefly_train.data.collate import packed_collate
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
    model = AutoModelForCausalLM.from_pretrained(tiny_llama, dtype=torch.float32, attn_implementation=attn)
    if attn == "varlen":
        varlen.install(model)
    return model


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


def test_segments_are_computed_once_per_forward_or_taken_from_the_batch(tiny_llama, monkeypatch):
    """Every layer of a forward (2 here) shares one segment computation, done before the layers; a batch from
    packed_collate brings its segments (computed on the CPU) and none is computed."""
    calls = []
    real = varlen.segments
    monkeypatch.setattr(varlen, "segments", lambda *a: calls.append(1) or real(*a))
    model = _model(tiny_llama, "varlen")
    ids = torch.randint(5, 200, (1, 8), generator=torch.Generator().manual_seed(2))
    pos = torch.tensor([[0, 1, 2, 3, 0, 1, 2, 3]])
    first = model(input_ids=ids, position_ids=pos, use_cache=False).logits
    assert len(calls) == 1 and model.config.num_hidden_layers == 2
    batch = packed_collate([{"input_ids": ids[0, :4], "labels": ids[0, :4]},
                            {"input_ids": ids[0, 4:], "labels": ids[0, 4:]}])
    assert batch["cu_seq_lens_q"].tolist() == [0, 4, 8] and batch["max_length_q"] == 4
    from_batch = model(**{k: v for k, v in batch.items() if k != "labels"}, use_cache=False).logits
    assert len(calls) == 1
    torch.testing.assert_close(from_batch, first, rtol=0, atol=0)
    alone = _model(tiny_llama, "sdpa")
    torch.testing.assert_close(first[0, 4:], alone(input_ids=ids[:, 4:]).logits[0], rtol=1e-5, atol=1e-5)


def test_without_segments_it_says_how_to_get_them(tiny_llama):
    model = AutoModelForCausalLM.from_pretrained(tiny_llama, dtype=torch.float32, attn_implementation="varlen")
    with pytest.raises(FireflyError, match="install"):
        model(input_ids=torch.tensor([[5, 6, 7]]))


def test_compiled_layers_compile_once_for_every_packing(tiny_llama, monkeypatch):
    """Under `compile_layers` the attention is traced into each layer's graph. Packed batches with different
    numbers of conversations must not break the graph nor compile again per batch (one recompile marks the
    sizes dynamic). The CUDA kernel is torch's custom op; a custom op running the CPU loop stands in for it."""
    import torch._dynamo
    from torch._dynamo.utils import counters

    @torch.library.custom_op("firefly_test::segment_attention", mutates_args=())
    def segment_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu: torch.Tensor, longest: int,
                          scale: float) -> torch.Tensor:
        return real_kernel(q, k, v, cu, longest, scale)

    @segment_attention.register_fake
    def _(q, k, v, cu, longest, scale):
        return torch.empty_like(q)

    real_kernel = varlen._kernel
    monkeypatch.setattr(varlen, "_kernel", segment_attention)
    torch._dynamo.reset()
    counters.clear()
    model = _model(tiny_llama, "varlen").eval()
    g = torch.Generator().manual_seed(3)
    batches = []
    for lengths in ([7, 5, 12], [3, 9, 4, 8], [10, 14], [2, 2, 2, 6, 12]):
        rows = [{"input_ids": torch.randint(5, 200, (n,), generator=g), "labels": [0] * n} for n in lengths]
        batches.append({k: v for k, v in packed_collate(rows).items() if k != "labels"})
    with torch.no_grad():
        eager = [model(**b, use_cache=False).logits for b in batches]
        for layer in model.model.layers:
            layer.compile()
        graphs = []
        for batch, want in zip(batches, eager):
            torch.testing.assert_close(model(**batch, use_cache=False).logits, want, rtol=1e-5, atol=1e-5)
            graphs.append(counters["stats"]["unique_graphs"])
    assert dict(counters["graph_break"]) == {}
    assert graphs[1] == graphs[-1] > 0, graphs  # nothing compiled after the second packing
