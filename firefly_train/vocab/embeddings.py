"""Grow a model's embeddings to a grown tokenizer and initialise the new rows.

Rules (docs/vocab.md): the new tokenizer must keep every old token at its old id; the model must have
at least the old tokenizer's rows. A model with MORE rows than the new tokenizer (padded embeddings,
e.g. 32,064 rows for 32,000 tokens) is fine while the tokenizer is unchanged (nothing to do), but is an
error once the tokenizer grows: its padding rows would silently become the new tokens' rows with
whatever they hold, and shrinking would drop rows the checkpoint may use.
"""
from __future__ import annotations

import torch

from firefly_core.errors import FireflyError

METHODS = ("pieces", "mean", "random")


def _old_piece_ids(old_tokenizer, new_tokenizer, new_id: int) -> list[int]:
    """The ids the OLD tokenizer splits the new token into (its model applied to the token's raw form,
    so byte-level fragments and sentencepiece pieces split the same way the old tokenizer would)."""
    token = new_tokenizer.convert_ids_to_tokens(new_id)
    backend = getattr(old_tokenizer, "backend_tokenizer", None)
    if backend is not None:
        return [t.id for t in backend.model.tokenize(token)]
    return old_tokenizer.encode(new_tokenizer.convert_tokens_to_string([token]), add_special_tokens=False)


def _check(model, old_tokenizer, new_tokenizer) -> tuple[int, int, int]:
    old_n, new_n = len(old_tokenizer), len(new_tokenizer)
    rows = model.get_input_embeddings().weight.shape[0]
    if rows < old_n:
        raise FireflyError(f"the model has {rows} embedding rows but its tokenizer has {old_n} tokens: "
                           "model and tokenizer do not belong together")
    if new_n < old_n:
        raise FireflyError(f"the new tokenizer ({new_n} tokens) is smaller than the model's tokenizer ({old_n})")
    old_vocab, new_vocab = old_tokenizer.get_vocab(), new_tokenizer.get_vocab()
    moved = [t for t, i in old_vocab.items() if new_vocab.get(t) != i]
    if moved:
        raise FireflyError(f"the new tokenizer does not keep the old ids ({len(moved)} tokens moved, e.g. "
                           f"{moved[0]!r}): build it with `firefly-train vocab merge`")
    if rows > new_n and new_n > old_n:
        raise FireflyError(f"the model's embedding has {rows} rows, more than the grown tokenizer's {new_n} "
                           f"tokens: its padding rows {old_n}..{rows - 1} would be reused as new tokens; pad "
                           f"the tokenizer to at least {rows} (vocab merge --pad-to-multiple-of)")
    return old_n, new_n, rows


@torch.no_grad()
def resize_and_init(model, old_tokenizer, new_tokenizer, method: str = "pieces") -> int:
    """Grow embed_tokens and lm_head (tied or not) to len(new_tokenizer); returns the number of new rows.

    New row = mean of the old rows of the pieces the OLD tokenizer splits the new token into ("pieces"),
    the mean of all old rows ("mean"), or N(0, initializer_range) ("random"). Old rows are unchanged.
    """
    if method not in METHODS:
        raise FireflyError(f"embedding init method must be one of {', '.join(METHODS)}, got {method!r}")
    old_n, new_n, rows = _check(model, old_tokenizer, new_tokenizer)
    if new_n == old_n:
        return 0
    old_in = model.get_input_embeddings().weight[:old_n].detach().clone()
    out_emb = model.get_output_embeddings()
    tied = out_emb is None or out_emb.weight is model.get_input_embeddings().weight
    old_out = None if tied else out_emb.weight[:old_n].detach().clone()
    model.resize_token_embeddings(new_n, mean_resizing=False)
    targets = [(model.get_input_embeddings().weight, old_in)]
    if not tied:
        targets.append((model.get_output_embeddings().weight, old_out))
    new_ids = range(old_n, new_n)
    if method == "random":
        std = getattr(model.config, "initializer_range", 0.02)
        for weight, _ in targets:
            weight[old_n:new_n].normal_(0.0, std)
    elif method == "mean":
        for weight, old in targets:
            weight[old_n:new_n] = old.mean(0)
    else:
        for i in new_ids:
            ids = [j for j in _old_piece_ids(old_tokenizer, new_tokenizer, i) if 0 <= j < old_n]
            for weight, old in targets:
                weight[i] = old[ids].mean(0) if ids else old.mean(0)
    return new_n - old_n
