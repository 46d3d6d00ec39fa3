"""`FireflyLM`: lm-eval's `HFLM` giving the same log-likelihoods for multiple-choice tasks with far less work.

Stock `HFLM._loglikelihood_tokens` runs one forward pass per (context, continuation) request over the whole
context + continuation and takes a log-softmax over every position of the padded batch. For a multiple-choice
question every choice repeats the same context (ARC 25-shot: ~1,300 tokens, 4-5 choices), and within an MMLU
subject (5-shot, `first_n` sampler) or TruthfulQA (fixed 6-QA prompt) every question repeats the same few-shot
prefix. `FireflyLM` keeps HFLM's tokenization, request splitting, truncation rule, softmax dtype and result
format (it subclasses it) and changes only how the scores are computed:

1. requests with the same context tokens form one *question*; a batch's contexts run once, right-padded,
   exactly as HFLM runs its rows (so their keys/values and last hidden states are HFLM's);
2. every continuation (minus its last token) then runs as a row of its own tokens over its context's cached
   keys/values (`firefly_eval.cached_rows`: HFLM's own attention call, the linear layers on the new tokens only);
3. questions whose contexts share a long token prefix (an MMLU subject's few-shot block, TruthfulQA's prompt)
   run that prefix once; their contexts are rows over it;
4. only the positions that are scored go through the output layer and the log-softmax (row-invariant: the
   ninth session measured it bit for bit on an H200);
5. questions are sorted by context length and batched under a memory budget (`memory_budget`), a batch
   ending where padding would waste more than PAD_SLACK of its contexts' width (`_ends_batch`); its
   continuation rows, longest first, are cut into the passes that compute the fewest token rows
   (`cheapest_passes`; padding had been two thirds of HellaSwag's and TruthfulQA's continuation rows).

Requests longer than the model's window (which HFLM truncates from the left per request) are left to HFLM's
own code. Tokenization gives HFLM's token ids, but lm-eval encodes two strings per request one call at a time
(a 7B's GPU then waits on it: 36 s of 377 s for 2,500 HellaSwag questions on an H200's host); `loglikelihood`
encodes each chunk of requests' distinct strings in one batch call on all cores (`_EncodeAhead`).
`cached_templates()` additionally memoizes lm-eval's per-call Jinja compilation while contexts are built (the
same few templates are compiled for every few-shot example of every question).
"""
from __future__ import annotations

import contextlib
import functools
import itertools
import os
from dataclasses import dataclass, field
from unittest import mock

import torch
import torch.nn.functional as F
from lm_eval.models.huggingface import HFLM, _add_special_kwargs, has_bos_prefix
from tqdm import tqdm

from firefly_core.errors import FireflyError
from firefly_core.models import kv_position_bytes
from firefly_eval.cached_rows import pool_of, rows_over
from firefly_eval.prefix_ppl import common_prefix_len

MIN_SHARED_PREFIX = 64  # tokens; a shorter common prefix is not worth its own forward pass
MIN_SHARING_QUESTIONS = 8  # fewer (random few-shot draws that happen to start alike) are batched with the rest
MIN_PASS_TOKENS = 2048  # on a GPU, token rows per forward pass at the least: fewer get dummy rows (`_padded`)
MAX_BATCH_POSITIONS = 131072  # on a CPU, a batch may hold what this many cached context positions take
GPU_MEMORY_SHARE = 0.5  # of the free memory, for a batch's keys, values and row layouts (`memory_budget`)
ENCODE_CHUNK = 4096  # requests whose strings are encoded in one batch call
PAD_SLACK = 0.25  # a batch ends before a context this much shorter than its width (`FireflyLM._ends_batch`)
PASS_OVERHEAD_TOKENS = 256  # what one more forward pass costs, in token rows (`cheapest_passes`)


@dataclass
class _Question:
    """One distinct context and the requests (by index) that continue it."""
    context: tuple[int, ...]
    requests: list[int] = field(default_factory=list)
    prefix_len: int = 0  # tokens of `context` taken from a shared, cached prefix


def position_bytes(model) -> tuple[int, int]:
    """(a cached context position: its keys and values in every layer, twice, as the batch's cache and the pool
    made from it coexist while the pool is built; a position of a row over the cache, in the one layer that
    runs at a time: its keys, values, query and output). A 7B in bf16: 1,024 and 32 KiB."""
    cfg = model.config
    kv = kv_position_bytes(model)
    return 2 * cfg.num_hidden_layers * kv, kv + kv * cfg.num_attention_heads // cfg.num_key_value_heads


def memory_budget(model) -> int:
    """Bytes a batch may hold (`FireflyLM._batch_bytes`): GPU_MEMORY_SHARE of a GPU's free memory; on a CPU what
    MAX_BATCH_POSITIONS cached context positions take."""
    if model.device.type != "cuda":
        return MAX_BATCH_POSITIONS * position_bytes(model)[0]
    free, _ = torch.cuda.mem_get_info(model.device)
    return int(free * GPU_MEMORY_SHARE)


def cheapest_passes(lengths: list[int], floor: int, overhead: int = PASS_OVERHEAD_TOKENS) -> list[range]:
    """Rows sorted longest first, cut into passes (index ranges) at the least cost: a pass costs its rows padded to
    its first row's length, at least `floor` token rows (dummy rows fill the rest), plus `overhead`. Cuts fall
    between distinct lengths (dynamic programming over them)."""
    bounds = [k for k in range(len(lengths)) if k == 0 or lengths[k] != lengths[k - 1]] + [len(lengths)]
    best, cut = [0] + [float("inf")] * (len(bounds) - 1), [0] * len(bounds)
    for j in range(1, len(bounds)):  # the cheapest passes over rows bounds[0]:bounds[j], ending with bounds[i]:bounds[j]
        for i in range(j):
            cost = best[i] + max((bounds[j] - bounds[i]) * lengths[bounds[i]], floor) + overhead
            if cost < best[j]:
                best[j], cut[j] = cost, i
    passes, j = [], len(bounds) - 1
    while j > 0:
        passes.append(range(bounds[cut[j]], bounds[j]))
        j = cut[j]
    return passes[::-1]


def pair_strings(context: str, continuation: str) -> tuple[str, str]:
    """The strings `TemplateLM._encode_pair` encodes for a causal model: the context without its trailing
    spaces, and context + continuation (a change there in lm-eval only makes `_EncodeAhead` miss)."""
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces:
        context, continuation = context[:-n_spaces], context[-n_spaces:] + continuation
    return context, context + continuation


@contextlib.contextmanager
def parallel_tokenizers():
    """Within the block, a fast tokenizer's batch calls use every core (the CLIs and the GPU kit set
    TOKENIZERS_PARALLELISM=false for the whole process; the setting is read at each call)."""
    old = os.environ.get("TOKENIZERS_PARALLELISM")
    os.environ["TOKENIZERS_PARALLELISM"] = "true"
    try:
        yield
    finally:
        if old is None:
            del os.environ["TOKENIZERS_PARALLELISM"]
        else:
            os.environ["TOKENIZERS_PARALLELISM"] = old


class _EncodeAhead:
    """HFLM's `tok_encode(string)` for the strings that `TemplateLM.loglikelihood` will ask for, in its order:
    on a miss, the next ENCODE_CHUNK requests' distinct strings are encoded in one batch call (the previous
    chunk's are dropped). `get` returns None for a string not found there; the caller then encodes it alone."""

    def __init__(self, lm: "FireflyLM", pairs: list[tuple[str, str]]):
        self.lm, self.pairs, self.next, self.ids = lm, pairs, 0, {}
        self.bos = lm.tokenizer.decode(lm.prefix_token_id)

    def get(self, string: str) -> list[int] | None:
        if string not in self.ids and self.next < len(self.pairs):
            chunk = self.pairs[self.next:self.next + ENCODE_CHUNK]
            self.next += len(chunk)
            self.ids = self.encode(list(dict.fromkeys(s for c, k in chunk if c for s in pair_strings(c, k))))
        return self.ids.get(string)

    def encode(self, strings: list[str]) -> dict[str, list[int]]:
        """HFLM.tok_encode's special-token rule (none added to a string that starts with the BOS text), batched."""
        kwargs = _add_special_kwargs(None, self.lm.add_bos_token)
        groups: dict[bool, list[str]] = {False: [], True: []}  # starts with the BOS text -> strings
        for s in strings:
            groups[has_bos_prefix(s, self.bos)].append(s)
        found = {}
        with parallel_tokenizers():
            for bos, group in groups.items():
                if group:
                    extra = {"add_special_tokens": False} if bos else {}
                    ids = self.lm.tokenizer(group, **{**kwargs, **extra}, return_attention_mask=False)["input_ids"]
                    found.update(zip(group, ids))
        return found


@contextlib.contextmanager
def cached_templates():
    """Within the block, lm-eval compiles each distinct Jinja template once instead of once per call."""
    from lm_eval import utils

    compile_once = functools.lru_cache(maxsize=None)(utils.env.from_string)

    def apply_template(template: str, doc: dict) -> str:
        return compile_once(template).render(**doc)

    with mock.patch.object(utils, "apply_template", apply_template):
        yield


def group_shared_prefixes(questions: list[_Question]) -> list[list[_Question]]:
    """Contexts sorted by tokens; runs of at least MIN_SHARING_QUESTIONS that share at least MIN_SHARED_PREFIX
    tokens (always leaving each context's last token, whose logits are scored) get `prefix_len` set. Returns
    the groups with a shared prefix, then one group of all the others (prefix_len 0)."""
    runs: list[tuple[int, list[_Question]]] = []  # (tokens shared by all members, members)
    for q in sorted(questions, key=lambda q: q.context):
        if runs:
            shared, members = runs[-1]
            limit = min(shared, len(q.context) - 1)
            n = common_prefix_len([members[0].context[:limit], q.context[:limit]])
            if n >= MIN_SHARED_PREFIX:
                runs[-1] = (n, members)
                members.append(q)
                continue
        runs.append((len(q.context) - 1, [q]))
    groups, lone = [], []
    for shared, members in runs:
        if len(members) < MIN_SHARING_QUESTIONS:
            lone += members
            continue
        for q in members:
            q.prefix_len = shared
        groups.append(members)
    return groups + ([lone] if lone else [])


class FireflyLM(HFLM):
    """HFLM with grouped, prefix-cached multiple-choice scoring (see the module docstring).

    `batch_size` counts questions (rows) per forward pass ('auto': as many as `max_batch_bytes` allows; None:
    `memory_budget`)."""

    def __init__(self, *args, max_batch_bytes: int | None = None, min_pass_tokens: int | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        if self.backend != "causal":
            raise FireflyError("FireflyLM scores causal language models only")
        if getattr(self.model.config, "final_logit_softcapping", None):
            raise FireflyError("FireflyLM applies the output layer itself: logit soft-capping is not supported")
        self.max_batch_bytes = max_batch_bytes or memory_budget(self.model)
        self._position_bytes = position_bytes(self.model)
        # the floor is for GPU kernels' choices; on a CPU the dummy rows would only cost time
        self.min_pass_tokens = min_pass_tokens if min_pass_tokens is not None else (
            MIN_PASS_TOKENS if self.device.type == "cuda" else 0)
        self._ahead: _EncodeAhead | None = None

    # --- tokenization: HFLM's ids, each chunk of requests' distinct strings in one batch call ------------------
    def loglikelihood(self, requests, disable_tqdm: bool = False):
        self._ahead = _EncodeAhead(self, [req.args for req in requests])
        try:
            return super().loglikelihood(requests, disable_tqdm)
        finally:
            self._ahead = None

    def tok_encode(self, string: str, add_special_tokens: bool | None = None, left_truncate_len: int | None = None,
                   **kwargs) -> list[int]:
        ids = None
        if self._ahead is not None and add_special_tokens is None and not kwargs:
            ids = self._ahead.get(string)
        if ids is None:
            return super().tok_encode(string, add_special_tokens, left_truncate_len, **kwargs)
        return list(ids[-left_truncate_len:] if left_truncate_len else ids)

    # --- scoring --------------------------------------------------------------------------------------------
    def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, override_bs: int | None = None):
        results: list[tuple[float, bool] | None] = [None] * len(requests)
        rows = override_bs or (None if self.batch_size == "auto" else int(self.batch_size))
        too_long = [i for i, (_, ctx, cont) in enumerate(requests) if len(ctx) + len(cont) > self.max_length + 1]
        if too_long:  # HFLM truncates these from the left, differently for each continuation: its own code
            # (one at a time under 'auto': HFLM's probe would try 64 rows of the whole window)
            for i, res in zip(too_long, super()._loglikelihood_tokens([requests[i] for i in too_long],
                                                                       disable_tqdm, rows or 1)):
                results[i] = res
        skip = set(too_long)
        questions: dict[tuple[int, ...], _Question] = {}
        for i, (_, ctx, cont) in enumerate(requests):
            assert len(ctx) > 0 and len(cont) > 0
            if i not in skip:
                questions.setdefault(tuple(ctx), _Question(tuple(ctx))).requests.append(i)
        pbar = tqdm(total=len(requests) - len(skip), disable=disable_tqdm or self.rank != 0,
                    desc="Running loglikelihood requests (grouped)")
        for group in group_shared_prefixes(list(questions.values())):
            prefix = group[0].context[:group[0].prefix_len]
            pool = self._prefix_pool(prefix) if prefix else None
            for batch in self._batches(group, requests, rows):
                for i, res in self._score(batch, requests, pool):
                    results[i] = res
                    if requests[i][0] is not None:
                        self.cache_hook.add_partial("loglikelihood", requests[i][0], res)
                    pbar.update(1)
        pbar.close()
        return results

    def _batch_bytes(self, batch: list[_Question], requests) -> int:
        """What the batch holds at most: its contexts' keys and values in every layer, and in one layer the layout
        of every continuation row of more than one token (context, prefix and padding included)."""
        width = max(len(q.context) for q in batch)
        own = max((len(requests[i][2]) - 1 for q in batch for i in q.requests), default=0)
        rows = sum(len(requests[i][2]) > 1 for q in batch for i in q.requests)
        cached, layout = self._position_bytes
        return len(batch) * width * cached + rows * (width + own) * layout

    def _batches(self, group: list[_Question], requests, max_rows: int | None):
        """Longest contexts first; each batch under `max_batch_bytes` and `max_rows` questions, its contexts one
        pass of little padding (`_ends_batch`)."""
        ordered = sorted(group, key=lambda q: -len(q.context))
        lengths = [len(q.context) - q.prefix_len for q in ordered]
        rest = list(itertools.accumulate(reversed(lengths)))[::-1]  # tokens from each context on
        batch: list[_Question] = []
        for k, q in enumerate(ordered):
            if batch and (len(batch) == max_rows or self._batch_bytes(batch + [q], requests) > self.max_batch_bytes
                          or self._ends_batch(lengths[k], len(batch[0].context) - q.prefix_len, len(batch), rest[k])):
                yield batch
                batch = []
            batch.append(q)
        if batch:
            yield batch

    def _ends_batch(self, length: int, width: int, rows: int, rest: int) -> bool:
        """Whether a batch of `rows` contexts padded to `width` (longest first) ends before a context of `length`
        with `rest` tokens from it on: when padding it would waste more than PAD_SLACK of the width, and both
        this batch's pass and the rest fill `min_pass_tokens` token rows (a pass with fewer gets dummy rows)."""
        return length < (1 - PAD_SLACK) * width and min(rows * width, rest) >= self.min_pass_tokens

    def _continuation_passes(self, rows: list[tuple[int, int]], requests) -> list[list[tuple[int, int]]]:
        """(question row, request) pairs of continuations of two tokens or more, longest first, cut into the
        cheapest passes (`cheapest_passes`)."""
        ordered = sorted(rows, key=lambda ri: -len(requests[ri[1]][2]))
        lengths = [len(requests[i][2]) - 1 for _, i in ordered]
        return [ordered[k.start:k.stop] for k in cheapest_passes(lengths, self.min_pass_tokens)]

    def _forward_context(self):
        return torch.autocast(device_type=self.device.type, dtype=self.mixed_precision_dtype,
                              enabled=self.mixed_precision_dtype is not None)

    def _padded(self, rows: list) -> torch.Tensor:
        """Right-padded token rows, then all-padding rows up to `min_pass_tokens`: with few rows the linear
        layers' products take other kernels than HFLM's large batches do, and round differently (on an H200
        one question's continuations per pass, about 80 token rows, were not bit for bit HFLM's; passes of
        1,920 and more were: `bench/NOTES.md`, ninth session)."""
        width = max(len(r) for r in rows)
        out = torch.zeros(max(len(rows), -(-self.min_pass_tokens // width)), width, dtype=torch.long)
        for r, row in enumerate(rows):
            out[r, :len(row)] = torch.tensor(row, dtype=torch.long)
        return out.to(self.device)

    @torch.no_grad()
    def _prefix_pool(self, prefix: tuple[int, ...]):
        with self._forward_context():
            out = self.model.get_decoder()(input_ids=self._padded([prefix]), use_cache=True)
        return pool_of([(layer.keys[:1], layer.values[:1]) for layer in out.cache.layers])

    @torch.no_grad()
    def _contexts(self, batch: list[_Question], prefix_pool):
        """The batch's contexts (after the shared prefix), right-padded in one pass: HFLM's own layout and kernel
        without a prefix, rows over the cached prefix with one. Returns (hidden state at each context's last
        token, the pool of their keys/values, each question's pool positions in order)."""
        plen = batch[0].prefix_len
        ctxs = [q.context[plen:] for q in batch]
        width = max(len(c) for c in ctxs)
        tokens, decoder = self._padded(ctxs), self.model.get_decoder()
        if prefix_pool is None:
            out = decoder(input_ids=tokens, use_cache=True)
            pool = pool_of([(layer.keys, layer.values) for layer in out.cache.layers])
            first = 0
        else:
            positions = (plen + torch.arange(width, device=self.device)).expand(len(tokens), -1)
            with rows_over(self.model, prefix_pool, [torch.arange(plen)] * len(tokens), width, capture=True) as own:
                out = decoder(input_ids=tokens, position_ids=positions, use_cache=False)
            pool = [(torch.cat([pk, nk]), torch.cat([pv, nv]))
                    for (pk, pv), (nk, nv) in zip(prefix_pool, pool_of(own))]
            first = plen
        cached = [torch.cat([torch.arange(plen), first + r * width + torch.arange(len(c))]) for r, c in enumerate(ctxs)]
        lens = torch.tensor([len(c) for c in ctxs], device=self.device)
        last = out.last_hidden_state[torch.arange(len(batch), device=self.device), lens - 1]
        return last, pool, cached

    @torch.no_grad()
    def _score(self, batch: list[_Question], requests, prefix_pool):
        """Two passes: the contexts, then every continuation (minus its last token) as a row over its context's
        cached keys/values; yields (request index, (log-likelihood, is_greedy))."""
        with self._forward_context():
            last, pool, cached = self._contexts(batch, prefix_pool)
            rows = [(r, i) for r, q in enumerate(batch) for i in q.requests if len(requests[i][2]) > 1]
            states, base = [last], {}  # base[i]: where request i's second token's state is in cat(states)
            offset = len(batch)
            for part in self._continuation_passes(rows, requests):
                tokens = self._padded([requests[i][2][:-1] for _, i in part])
                own, dummies = tokens.shape[1], len(tokens) - len(part)  # dummy rows: their own tokens only
                positions = torch.stack([len(batch[r].context) + torch.arange(own) for r, _ in part]
                                        + [torch.arange(own)] * dummies).to(self.device)
                with rows_over(self.model, pool, [cached[r] for r, _ in part] + [torch.arange(0)] * dummies, own):
                    hidden = self.model.get_decoder()(input_ids=tokens, position_ids=positions,
                                                      use_cache=False).last_hidden_state
                states.append(hidden.flatten(0, 1))  # the part's row k, token j: offset + k * own + j
                base.update((i, offset + k * own) for k, (_, i) in enumerate(part))
                offset += tokens.numel()
            states = torch.cat(states)
            picked, targets, spans = [], [], []
            for r, q in enumerate(batch):
                for i in q.requests:
                    cont = requests[i][2]
                    start = len(targets)
                    targets += cont
                    picked.append(r)  # the first token: from the context's last hidden state
                    if len(cont) > 1:
                        picked += range(base[i], base[i] + len(cont) - 1)
                    spans.append((i, start, len(targets)))
            logits = self.model.get_output_embeddings()(states[torch.tensor(picked, device=self.device)])
        logprobs = F.log_softmax(logits, dim=-1, dtype=self.softmax_dtype)
        target = torch.tensor(targets, device=self.device)
        token_lp = logprobs.gather(1, target[:, None]).squeeze(1).cpu()
        greedy = (logprobs.argmax(dim=-1) == target).cpu()
        for i, start, end in spans:
            yield i, (float(token_lp[start:end].sum()), bool(greedy[start:end].all()))
