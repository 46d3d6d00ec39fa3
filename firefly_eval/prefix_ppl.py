"""OpenCompass's perplexity of a prompt, computed once per shared prefix and once per question.

OpenCompass's PPL inferencer scores a multiple-choice question by calling `get_ppl` on four prompts that
differ only in their last token (`...答案是: A` .. `D`), one label at a time over the whole subject, and
each prompt repeats the subject's 5-shot prefix. `get_ppl` averages the loss over every token of a
prompt, so per prompt it needs:

    sum over targets 1..n-2 of the per-token loss   (the same for the four options: the "stem")
  + the loss of the last token                      (read off the stem's last logits row)
  / the number of tokens                            (padding ids excluded, as OpenCompass does)

`PrefixCachedPPL` computes the stem of each question once, with the key/value cache of the prefix the
batch shares (computed once, reused while prompts keep starting with it), and keeps the stem's last
logits row, so the other options of the question are answered without running the model. The numbers
follow OpenCompass's definition (logits in the model's dtype, loss in float32, padding ids ignored as
targets and not counted); they differ from its batched full passes only by floating-point noise.
"""
from __future__ import annotations

from collections import OrderedDict

import numpy as np
import torch
import torch.nn.functional as F

MIN_PREFIX = 8  # shorter common prefixes are not worth a cache


def common_prefix_len(rows: list[list[int]]) -> int:
    first = rows[0]
    n = min(len(r) for r in rows)
    for j in range(n):
        t = first[j]
        if any(r[j] != t for r in rows):
            return j
    return n


class PrefixCachedPPL:
    """Callable: token id rows -> OpenCompass `get_ppl` values. Keeps the last prefix and up to
    `max_stems` stems (key: the prompt without its last token). Stems missing from the cache run sorted by
    length, in chunks of at most `chunk_tokens` key/value positions (prefix included), so padding stays
    small and memory bounded whatever batch size OpenCompass passes."""

    def __init__(self, model, pad_id: int | None, max_stems: int = 8192, chunk_tokens: int = 32768):
        self.model = model
        self.pad_id = pad_id
        self.max_stems = max_stems
        self.chunk_tokens = chunk_tokens
        self.prefix: tuple[int, ...] = ()
        self.prefix_kv: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.prefix_loss = 0.0  # float32 sum of the losses of targets 1..P-1
        self.prefix_last: torch.Tensor | None = None  # float32 log-probabilities at position P-1
        # stem (prompt without its last token) -> (loss sum of its targets, float32 log-probabilities of the
        # token after it, on the CPU: reading an option's loss needs no device round trip)
        self.stems: OrderedDict[tuple[int, ...], tuple[float, np.ndarray]] = OrderedDict()
        self.forward_tokens = 0  # tokens run through the model, for the benchmark

    def __call__(self, rows: list[list[int]]) -> list[float]:
        if any(len(r) < 2 for r in rows):
            raise ValueError("every prompt needs at least two tokens")
        keys = [tuple(r[:-1]) for r in rows]
        missing = list(dict.fromkeys(k for k in keys if k not in self.stems))
        if missing:
            self._fill_stems(missing)
        out = []
        for r, key in zip(rows, keys):
            loss, logprobs = self.stems[key]
            self.stems.move_to_end(key)
            if r[-1] != self.pad_id:
                loss -= float(logprobs[r[-1]])
            out.append(loss / sum(1 for t in r if t != self.pad_id))
        return out

    @torch.inference_mode()
    def _fill_stems(self, stems: list[tuple[int, ...]]) -> None:
        p = common_prefix_len(stems + [self.prefix] if len(stems) == 1 and self.prefix else stems)
        p = min(p, min(len(s) for s in stems) - 1)  # every stem keeps at least one token of its own
        if p < MIN_PREFIX:
            p = 0
        if p and stems[0][:p] != self.prefix:
            self._set_prefix(stems[0][:p])
        stems = sorted(stems, key=len)
        start = 0
        while start < len(stems):
            end = start + 1  # grow the chunk while its padded key/value positions fit the budget
            while end < len(stems) and (end + 1 - start) * len(stems[end]) <= self.chunk_tokens:
                end += 1
            self._run_chunk(stems[start:end], p)
            start = end

    def _run_chunk(self, stems: list[tuple[int, ...]], p: int) -> None:
        device = self.model.device
        width = max(len(s) for s in stems) - p
        ids = torch.full((len(stems), width), self.pad_id or 0, dtype=torch.long)
        mask = torch.zeros((len(stems), p + width), dtype=torch.long)
        mask[:, :p] = 1
        for i, s in enumerate(stems):
            ids[i, : len(s) - p] = torch.tensor(s[p:])
            mask[i, p: len(s)] = 1
        kwargs = {}
        if p:
            kwargs["cache"] = self._prefix_cache(len(stems))
            kwargs["position_ids"] = torch.arange(p, p + width, device=device).unsqueeze(0)
        ids = ids.to(device)  # once: a copy per stem would wait, each time, for the work queued before it
        logits = self.model(input_ids=ids, attention_mask=mask.to(device), use_cache=bool(p), **kwargs).logits
        self.forward_tokens += int(mask[:, p:].sum())
        lengths = [len(s) - p for s in stems]  # each stem's rows in `logits`: positions p .. len(s)-1
        rows = torch.tensor(lengths, device=device) - 1
        last = torch.log_softmax(logits[torch.arange(len(stems), device=device), rows].float(), -1)
        sums = torch.stack([self._loss_sum(logits[i, : n - 1], ids[i, 1:n]) for i, n in enumerate(lengths)]).tolist()
        last = last.cpu().numpy()
        for i, s in enumerate(stems):
            loss = sums[i]
            if p:
                loss += self.prefix_loss - (0.0 if s[p] == self.pad_id else float(self.prefix_last[s[p]]))
            self.stems[s] = (loss, last[i])
            if len(self.stems) > self.max_stems:
                self.stems.popitem(last=False)

    def _prefix_cache(self, batch: int):
        """A cache holding the prefix's keys and values for `batch` rows as broadcast views: each layer's one
        concatenation with the stems' keys and values writes the only copy. (`DynamicCache(ddp_cache_data=...)`
        would first copy the broadcast prefix into every row, then the forward would copy it again.)"""
        from transformers import DynamicCache
        from transformers.cache_utils import DynamicLayer

        cache = DynamicCache()
        for k, v in self.prefix_kv:
            layer = DynamicLayer()
            layer.lazy_initialization(k, v)
            layer.keys, layer.values = k.expand(batch, -1, -1, -1), v.expand(batch, -1, -1, -1)
            cache.layers.append(layer)
        return cache

    def _loss_sum(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """float32 sum of the per-token losses, padding ids ignored as targets (OpenCompass's `get_ppl`)."""
        if self.pad_id is not None:
            targets = targets.masked_fill(targets == self.pad_id, -100)
        return F.cross_entropy(logits.float(), targets, ignore_index=-100, reduction="sum")

    @torch.inference_mode()
    def _set_prefix(self, prefix: tuple[int, ...]) -> None:
        from transformers import DynamicCache

        device = self.model.device
        cache = DynamicCache()
        logits = self.model(input_ids=torch.tensor([prefix], device=device), cache=cache, use_cache=True,
                            attention_mask=self._prefix_attention_mask(len(prefix))).logits[0]
        self.forward_tokens += len(prefix)
        self.prefix = prefix
        self.prefix_kv = [(layer.keys, layer.values) for layer in cache.layers]
        self.prefix_loss = float(self._loss_sum(logits[:-1], torch.tensor(prefix[1:], device=device)))
        self.prefix_last = torch.log_softmax(logits[-1].float(), -1).cpu()

    def _prefix_attention_mask(self, n: int) -> torch.Tensor | None:
        """An explicit causal mask for SDPA, so the prefix runs through the same masked attention kernel as
        the stems and as OpenCompass's padded batches. Without it, transformers drops the all-ones mask and
        SDPA takes its causal-only (flash) kernel, whose rounding differs."""
        if self.model.config._attn_implementation != "sdpa":
            return None
        return torch.ones(n, n, dtype=torch.bool, device=self.model.device).tril()[None, None]
