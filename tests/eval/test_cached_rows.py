"""`cached_rows`: a row's keys are laid out as in the full causal row, its queries at their own positions, and
its hidden states are the full pass's (CPU, float32, within rounding)."""
import torch

from firefly_eval.cached_rows import layout, pool_of, rows_over


def test_layout_puts_cached_positions_first_then_own_tokens():
    index, own_at = layout([torch.tensor([5, 6, 7]), torch.tensor([9])], own=2, pool_size=10, device="cpu")
    # pool positions, then own tokens at pool_size + row * own + j, then padding (position 0, never attended)
    assert index.tolist() == [[5, 6, 7, 10, 11], [9, 12, 13, 0, 0]]
    assert own_at.tolist() == [[3, 4], [1, 2]]


def test_rows_over_a_cached_context_give_the_full_pass(tiny_llama):
    from firefly_eval import checkpoints

    model, _, _ = checkpoints.load(str(tiny_llama), device="cpu")
    decoder = model.get_decoder()
    g = torch.Generator().manual_seed(0)
    contexts = [torch.randint(5, 1000, (n,), generator=g) for n in (17, 9)]
    own = [torch.randint(5, 1000, (n,), generator=g) for n in (4, 2)]
    with torch.no_grad():
        full = [decoder(input_ids=torch.cat([c, o])[None]).last_hidden_state[0, len(c):] for c, o in zip(contexts, own)]
        width = max(len(c) for c in contexts)
        padded = torch.stack([torch.nn.functional.pad(c, (0, width - len(c))) for c in contexts])
        first = decoder(input_ids=padded, use_cache=True)
        pool = pool_of([(layer.keys, layer.values) for layer in first.cache.layers])
        rows = torch.stack([torch.nn.functional.pad(o, (0, 4 - len(o))) for o in own])
        positions = torch.stack([len(c) + torch.arange(4) for c in contexts])
        cached = [r * width + torch.arange(len(c)) for r, c in enumerate(contexts)]
        with rows_over(model, pool, cached, 4):
            hidden = decoder(input_ids=rows, position_ids=positions, use_cache=False).last_hidden_state
    assert model.config._attn_implementation == "sdpa"  # restored
    for r, expected in enumerate(full):
        torch.testing.assert_close(hidden[r, :len(own[r])], expected, atol=1e-5, rtol=1e-5)
