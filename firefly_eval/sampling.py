"""Per-item reproducible sampling for a whole batch at once: temperature, top-p, then Gumbel-max.

Row i's noise at decoding step t for token v is a counter-based hash of (item seed, t, v) made with integer
tensor ops (the same bits on any device, in any batch), turned into Gumbel noise in float64. The token is
the argmax of the filtered logits plus that noise, which is an exact draw from softmax(filtered logits).
So an item's answer depends on its seed and its own logits only, never on the other rows of its batch,
and the whole batch is sampled with a fixed number of tensor ops (no Python loop over rows).
"""
from __future__ import annotations

MASK32 = 0xFFFFFFFF
_MUL = 0x45D9F3B  # below 2**31: a product with a 32-bit value stays inside int64
_GOLDEN = 0x9E3779B9
_ONE = 2**40  # probability 1 in the fixed-point cumulative sum of the top-p cut


def mix32(x):
    """A bijective 32-bit integer hash of an int64 tensor (or int) holding values in [0, 2**32)."""
    x = (((x >> 16) ^ x) * _MUL) & MASK32
    x = (((x >> 16) ^ x) * _MUL) & MASK32
    return (x >> 16) ^ x


def gumbel_noise(row_keys, step: int, token_keys):
    """float64 Gumbel noise, [rows, vocab], for decoding step `step`: a function of (row key, step, token)."""
    import torch

    step_keys = mix32(row_keys ^ mix32((step * _GOLDEN) & MASK32))  # [rows]
    bits = mix32((mix32(step_keys[:, None] ^ token_keys[None, :]) + step_keys[:, None]) & MASK32)
    uniform = (bits.to(torch.float64) + 0.5) / 2.0**32  # in (0, 1), exactly representable
    return -torch.log(-torch.log(uniform))


class ItemSampler:
    """Samples one token per row from [rows, vocab] logits; row i follows `seeds[i]` alone."""

    def __init__(self, seeds: list[int], vocab_size: int, temperature: float, top_p: float, device):
        import torch

        self.temperature, self.top_p = temperature, top_p
        self.row_keys = mix32(torch.tensor(seeds, dtype=torch.int64, device=device) & MASK32)
        self.token_keys = (torch.arange(vocab_size, dtype=torch.int64, device=device) * _GOLDEN) & MASK32

    def filtered_logits(self, logits):
        """Temperature, then top-p (the smallest set of tokens holding `top_p` of the probability; at least one)."""
        import torch

        scores = logits.float() / self.temperature
        if self.top_p < 1.0:
            # stable: bf16 logits tie often, and an unstable (CUDA) sort orders tied tokens differently from
            # one row position to another, which would move the top-p cut between equal scores
            sorted_scores, order = torch.sort(scores, dim=-1, stable=True)
            # cumulative probability in fixed point: PyTorch documents a floating-point cumsum on CUDA as
            # nondeterministic, and one rounding moves the cut; int64 sums are exact in any order (this alone did
            # not make a GPU run repeat itself: bench/NOTES.md, ninth session)
            fixed = (torch.softmax(sorted_scores, dim=-1).double() * _ONE).round().long()
            drop_sorted = fixed.cumsum(dim=-1) <= round((1 - self.top_p) * _ONE)
            drop_sorted[:, -1] = False
            scores = scores.masked_fill(drop_sorted.scatter(1, order, drop_sorted), float("-inf"))
        return scores

    def __call__(self, logits, step: int):
        noise = gumbel_noise(self.row_keys, step, self.token_keys)
        return (self.filtered_logits(logits).double() + noise).argmax(dim=-1)
