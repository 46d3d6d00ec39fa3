"""Collation: exact padded batches; packed rows give each conversation the same loss as on its own."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from firefly_core.templates import encode_conversation, get_template
from firefly_train.data.collate import packed_collate, pad_collate
from firefly_train.data.sft import pack_rows

X = -100


def test_pad_collate_exact():
    batch = [{"input_ids": [5, 6, 7], "labels": [X, 6, 7]}, {"input_ids": torch.tensor([8]), "labels": [8]}]
    out = pad_collate(batch, pad_id=0)
    assert out["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert out["labels"].tolist() == [[X, 6, 7], [8, X, X]]
    assert out["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert all(v.dtype == torch.long for v in out.values())


def test_packed_collate_exact():
    batch = [{"input_ids": [5, 6, 7], "labels": [X, 6, 7]}, {"input_ids": torch.tensor([8, 9]), "labels": [8, 9]}]
    out = packed_collate(batch)
    assert set(out) == {"input_ids", "labels", "position_ids", "cu_seq_lens_q", "cu_seq_lens_k", "max_length_q",
                        "max_length_k"}  # no attention_mask
    assert out["input_ids"].tolist() == [[5, 6, 7, 8, 9]]
    assert out["labels"].tolist() == [[X, 6, 7, X, 9]]  # each sample's first token never predicted
    assert out["position_ids"].tolist() == [[0, 1, 2, 0, 1]]
    assert all(out[k].dtype == torch.long for k in ("input_ids", "labels", "position_ids"))
    assert out["cu_seq_lens_q"].tolist() == [0, 3, 5] and out["cu_seq_lens_q"].dtype == torch.int32
    assert out["cu_seq_lens_k"] is out["cu_seq_lens_q"] and out["max_length_q"] == out["max_length_k"] == 4


def test_packed_collate_pads_to_a_fixed_length_with_a_segment_of_its_own():
    out = packed_collate([{"input_ids": [5, 6, 7], "labels": [X, 6, 7]}, {"input_ids": [8, 9], "labels": [8, 9]}],
                         pad_to=8)
    assert out["input_ids"].tolist() == [[5, 6, 7, 8, 9, 0, 0, 0]]
    assert out["labels"].tolist() == [[X, 6, 7, X, 9, X, X, X]]
    assert out["position_ids"].tolist() == [[0, 1, 2, 0, 1, 0, 1, 2]]
    assert out["cu_seq_lens_q"].tolist() == [0, 3, 5, 8] and out["max_length_q"] == 4


def test_packed_collate_keeps_the_position_ids_of_packed_rows():
    rows = [{"input_ids": [5, 6, 7, 8, 9], "labels": [X, 6, 7, X, 9], "position_ids": [0, 1, 2, 0, 1]},
            {"input_ids": torch.tensor([3, 4]), "labels": torch.tensor([X, 4]), "position_ids": torch.tensor([0, 1])}]
    out = packed_collate(rows)
    assert out["input_ids"].tolist() == [[5, 6, 7, 8, 9, 3, 4]]
    assert out["labels"].tolist() == [[X, 6, 7, X, 9, X, 4]]
    assert out["position_ids"].tolist() == [[0, 1, 2, 0, 1, 0, 1]]
    assert out["cu_seq_lens_q"].tolist() == [0, 3, 5, 7] and out["max_length_q"] == 4  # 3, as a power of two


def _encoded(tok, convs) -> list[dict]:
    template = get_template("auto", tok)
    batch = []
    for turns in convs:
        ids, labels = encode_conversation(template, tok, None, turns)
        batch.append({"input_ids": ids, "labels": labels})
    return batch


CONVS = [[("1+1等于几？", "等于2。")],
         [("中国的首都是哪里？", "北京。"), ("日本呢？", "东京。")],
         [("把“谢谢”翻译成英文。", "Thank you.")]]


@pytest.mark.parametrize("attn", ["sdpa", "eager", "varlen", pytest.param("flex_attention", marks=pytest.mark.slow)])
def test_packed_loss_equals_unpacked_loss(tiny_llama, attn):
    from transformers import AutoModelForCausalLM

    from firefly_core.models import load_tokenizer
    from firefly_train import varlen_attention

    tok = load_tokenizer(tiny_llama)
    model = AutoModelForCausalLM.from_pretrained(tiny_llama, dtype=torch.float32, attn_implementation=attn).eval()
    if attn == "varlen":
        varlen_attention.install(model)
    batch = _encoded(tok, CONVS)
    packed = packed_collate(batch)
    with torch.no_grad():
        logits = model(input_ids=packed["input_ids"], position_ids=packed["position_ids"], use_cache=False).logits[0]
        offset = 0
        for item in batch:
            n = len(item["input_ids"])
            alone = model(input_ids=torch.tensor([item["input_ids"]]), labels=torch.tensor([item["labels"]])).loss
            # next-token loss of this sample, read from the packed row
            targets = packed["labels"][0, offset + 1: offset + n]
            in_packed = F.cross_entropy(logits[offset: offset + n - 1], targets, ignore_index=X)
            torch.testing.assert_close(in_packed, alone, atol=1e-5, rtol=0)
            offset += n


@pytest.mark.parametrize("attn", ["sdpa", "eager", "varlen"])
def test_loss_of_packed_rows_equals_the_conversations_run_separately(tiny_llama, attn):
    """A micro-batch of rows from pack_rows (two conversations in one row, one in the other), flattened by
    packed_collate: its loss is the token-weighted mean of the conversations' own losses."""
    from transformers import AutoModelForCausalLM

    from firefly_core.models import load_tokenizer
    from firefly_train import varlen_attention

    tok = load_tokenizer(tiny_llama)
    model = AutoModelForCausalLM.from_pretrained(tiny_llama, dtype=torch.float32, attn_implementation=attn).eval()
    if attn == "varlen":
        varlen_attention.install(model)
    batch = _encoded(tok, CONVS)
    longest, second, _ = sorted((len(it["input_ids"]) for it in batch), reverse=True)
    rows = pack_rows(batch, longest + second)
    assert len(rows) == 2 and len(rows[0]["input_ids"]) == longest + second
    packed = packed_collate(rows)
    with torch.no_grad():
        loss = model(**packed, use_cache=False).loss
        total, targets = 0.0, 0
        for item in batch:
            n = sum(label != X for label in item["labels"][1:])  # the targets of the shifted loss
            total += n * model(input_ids=torch.tensor([item["input_ids"]]), labels=torch.tensor([item["labels"]])).loss
            targets += n
    torch.testing.assert_close(loss, total / targets, atol=1e-5, rtol=0)
