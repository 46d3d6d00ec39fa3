"""OpenCompass model class for any `--ckpt` form, and the one transformers-5 compatibility shim.

OpenCompass 0.5.4's `HuggingFaceBaseModel` loads weights from a plain HF path and encodes batches with
`tokenizer.batch_encode_plus`, which transformers 5 removed. This subclass keeps OpenCompass's data,
prompts, retriever, inferencer and summariser, and changes three things:

* loading goes through `firefly_eval.checkpoints.load`, so LoRA checkpoints (merged in memory), expanded
  vocabularies and the embedded alias work, on CUDA in bf16 when present and on the CPU in fp32 otherwise;
* the tokenizer gets `batch_encode_plus` back as an alias of `__call__` (same arguments, same output);
* with `prefix_cache=True` (firefly-eval's default), `get_ppl` computes OpenCompass's own definition of a
  prompt's perplexity through `firefly_eval.prefix_ppl`: the few-shot prefix a batch shares is run once,
  each question's stem once, and the options of a question are read off one logits row. Prompts with a
  `mask_length`, or longer than `max_seq_len` (where OpenCompass truncates), take OpenCompass's own path.

PPL scoring pads on the right (every real token keeps its position id; OpenCompass masks pads out of the
loss), generation pads on the left. On CUDA, scoring (both engines) attends through SDPA's memory-efficient
kernel: SDPA's first choice on Hopper with a mask is cuDNN's, which plans anew for every (batch, query, key)
shape, 50-80 ms a shape and 1-2 s where it compiles a kernel (`bench/sdpa_backends.py`, bench/NOTES.md), and
every chunk of stems and every padded OpenCompass batch has a shape of its own. The memory-efficient kernel
costs nothing per shape. Both engines take it, so their predictions compare kernel for kernel.
"""
from __future__ import annotations

import contextlib
from collections import OrderedDict

import numpy as np
import torch
from opencompass.models.base import LMTemplateParser
from opencompass.models.huggingface_above_v4_33 import HuggingFaceBaseModel, _convert_base_messages
from opencompass.registry import MODELS
from opencompass.utils.logging import get_logger
from torch.nn.attention import SDPBackend, sdpa_kernel

from firefly_core.models import load_tokenizer, resolve_checkpoint
from firefly_eval import checkpoints
from firefly_eval.prefix_ppl import PrefixCachedPPL


@MODELS.register_module()
class FireflyCausalLM(HuggingFaceBaseModel):
    """`path` is any reference `firefly_eval.checkpoints` accepts (alias, HF folder, LoRA checkpoint)."""

    def __init__(self, path: str, max_seq_len: int = 2048, tokenizer_only: bool = False,
                 generation_kwargs: dict | None = None, stop_words: list | None = None, prefix_cache: bool = False,
                 dtype: str | None = None, **other_kwargs):
        self.logger = get_logger()
        self.path = path
        self.tokenizer_only = tokenizer_only
        self.template_parser = LMTemplateParser()
        self.max_seq_len = max_seq_len
        self.drop_middle = False
        self.generation_kwargs = dict(generation_kwargs or {})
        self.stop_words = list(stop_words or [])
        if tokenizer_only:
            self.tokenizer = load_tokenizer(resolve_checkpoint(path).tokenizer)
        else:
            self.model, self.tokenizer, _ = checkpoints.load(path, dtype=getattr(torch, dtype) if dtype else None)
            self.model.generation_config.do_sample = False
            self.logger.info(f"loaded {path} on {self.model.device} ({self.model.dtype})")
        self.prefix_ppl = None
        self._token_ids: OrderedDict[str, list[int]] = OrderedDict()  # prompt -> ids, from get_token_len
        if prefix_cache and not tokenizer_only:
            self.prefix_ppl = PrefixCachedPPL(self.model, self.tokenizer.pad_token_id)
        self.tokenizer.batch_encode_plus = self.tokenizer.__call__  # removed in transformers 5
        self.tokenizer.truncation_side = "left"
        for k, v in other_kwargs.items():
            if v is not None:
                self.logger.warning(f"Unused argument {k}={v}")

    @contextlib.contextmanager
    def _padding(self, side: str):
        old, self.tokenizer.padding_side = self.tokenizer.padding_side, side
        try:
            yield
        finally:
            self.tokenizer.padding_side = old

    def get_token_len(self, prompt, add_special_tokens: bool = True) -> int:
        """As OpenCompass's, keeping the ids: its PPL inferencer asks for every prompt's length just before
        it scores the same prompts, so `get_ppl` needs no second tokenisation."""
        if self.prefix_ppl is None or not add_special_tokens:
            return super().get_token_len(prompt, add_special_tokens)
        return self.remember_token_ids([prompt])[0]

    def remember_token_ids(self, prompts: list) -> list[int]:
        """Token counts of parsed prompts, tokenised in one batched call (`FireflyPPLInferencer` asks for a
        label's prompts at once); with the prefix cache the ids are kept for `get_ppl`."""
        texts = _convert_base_messages(prompts)
        ids = self.tokenizer(texts, add_special_tokens=True)["input_ids"]
        if self.prefix_ppl is not None:
            for text, row in zip(texts, ids):
                self._token_ids[text] = row
            while len(self._token_ids) > self.prefix_ppl.max_stems:
                self._token_ids.popitem(last=False)
        return [len(row) for row in ids]

    def scoring_attention(self):
        """The attention kernels PPL scoring may use: on CUDA the memory-efficient one only (see the module)."""
        if self.model.device.type != "cuda":
            return contextlib.nullcontext()
        return sdpa_kernel([SDPBackend.EFFICIENT_ATTENTION])

    def get_ppl(self, inputs, mask_length=None):
        with self.scoring_attention():
            return self._get_ppl(inputs, mask_length)

    def _get_ppl(self, inputs, mask_length):
        if self.prefix_ppl is not None and mask_length is None:
            texts = _convert_base_messages(inputs)
            todo = [t for t in texts if t not in self._token_ids]
            known = dict(zip(todo, self.tokenizer(todo, add_special_tokens=True)["input_ids"])) if todo else {}
            rows = [self._token_ids.get(t) or known[t] for t in texts]
            if max(map(len, rows)) <= self.max_seq_len:
                return np.array(self.prefix_ppl(rows), dtype=np.float64)
        with self._padding("right"):
            return super().get_ppl(inputs, mask_length)

    def generate(self, inputs, max_out_len, min_out_len=None, stopping_criteria=(), **kwargs):
        with self._padding("left"):
            return super().generate(inputs, max_out_len, min_out_len, list(stopping_criteria), **kwargs)
