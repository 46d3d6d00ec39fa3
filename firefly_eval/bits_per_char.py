"""`firefly-eval bits-per-char`: how well a model predicts a text, in bits per character and per UTF-8 byte.

    bits/char = sum over the text's tokens of -log2 p(token | the tokens before it) / characters

The total is divided by characters (and bytes), not tokens, so models with different tokenizers compare
fairly: a base model and its expanded-vocabulary descendant encode the same characters with different
numbers of tokens, and per-token perplexities of the two would not be comparable.

What is scored, exactly:
* Documents are read as `firefly-train vocab stats` reads a corpus (`firefly_train.vocab.stats.read_corpus`):
  a non-blank line of a `.txt`, the `text` of a `.jsonl` line, a `text` cell of a `.csv`. Characters and
  bytes are those of the documents (line ends are not part of a document, not scored and not counted).
* Each document is scored on its own, from a start token (the tokenizer's BOS, or its EOS when it has no
  BOS: the separator pretraining puts between documents), so the first token of a document is predicted
  too and every token of the text is counted exactly once.
* A document longer than `--block-size` tokens is scored in windows of `--block-size` tokens that advance by
  `--stride`: the first window scores all its tokens, every later one only its last `stride` tokens, so
  each token after the first window is predicted from at least `block_size - stride` tokens of context.
  Documents that fit in one window (all of `samples/heldout_zh.txt`) are scored exactly, with their whole
  context.
* `--tokenizer` scores the model with a grown tokenizer, its new embedding rows initialised as training
  initialises them (`firefly_train.vocab.embeddings.resize_and_init`): the expanded model before its first
  training step, the starting point that continued pretraining improves on.
* Windows of all documents are batched (`--batch-size`, longest first); the log-probabilities are taken
  from float32 logits and summed in float64.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

from firefly_core.errors import FireflyError
from firefly_core.io import file_sha256
from firefly_core.models import default_device, load_tokenizer
from firefly_core.provenance import library_versions
from firefly_eval import checkpoints, results
from firefly_train.vocab.stats import read_corpus

DEFAULT_BLOCK = 1024


def add_arguments(parser) -> None:
    parser.add_argument("--ckpt", required=True,
                        help="model: embedded alias, HF folder, firefly-train checkpoint or run folder")
    parser.add_argument("--text", required=True, metavar="FILE",
                        help="the text to score: .txt (one document a non-blank line), .jsonl ({'text'}) or .csv (text)")
    parser.add_argument("-o", "--output", required=True, metavar="JSON", help="result file (docs/CONTRACTS.md)")
    parser.add_argument("--block-size", type=int, metavar="N",
                        help=f"tokens per window, start token included (default: {DEFAULT_BLOCK}, or the model's "
                             "context length when shorter)")
    parser.add_argument("--stride", type=int, metavar="N",
                        help="tokens a window advances in a long document (default: half the block size)")
    parser.add_argument("--tokenizer", metavar="DIR",
                        help="score with this grown tokenizer (a `firefly-train vocab merge` of the model's own): the "
                             "model's embeddings are grown as `firefly-train pretrain` grows them before its first "
                             "step, so this measures the expanded model before any training")
    parser.add_argument("--embedding-init", choices=("pieces", "mean", "random"), default="pieces",
                        help="with --tokenizer: how the new rows are initialised (the training config's "
                             "embedding_init; default pieces)")
    parser.add_argument("--batch-size", type=int, default=4, help="windows per forward pass")
    parser.add_argument("--max-chars", type=int, metavar="N",
                        help="score only the first documents of the file, up to about N characters")
    parser.add_argument("--device", help="cpu, cuda, cuda:1 (default: cuda when available)")


@dataclass
class Window:
    ids: list[int]  # start token or context, then the tokens
    scored: int  # how many of the last ids are scored


def windows(doc_ids: list[int], start_id: int, block_size: int, stride: int) -> list[Window]:
    """Windows over `[start_id] + doc_ids` that score every token of `doc_ids` exactly once (module docstring)."""
    if not 0 < stride <= block_size - 1:
        raise ValueError(f"need 0 < stride <= block_size - 1, got stride {stride}, block size {block_size}")
    ids = [start_id, *doc_ids]
    if len(ids) <= block_size:
        return [Window(ids, len(doc_ids))]
    out = [Window(ids[:block_size], block_size - 1)]
    end = block_size
    while end < len(ids):
        new_end = min(end + stride, len(ids))
        out.append(Window(ids[max(0, new_end - block_size):new_end], new_end - end))
        end = new_end
    return out


def score_windows(model, wins: list[Window], pad_id: int, batch_size: int, progress=None) -> float:
    """Total negative log-likelihood in nats of the scored tokens of all windows."""
    import torch

    order = sorted(range(len(wins)), key=lambda i: -len(wins[i].ids))
    total = 0.0
    device = model.device
    for start in range(0, len(order), batch_size):
        batch = [wins[i] for i in order[start:start + batch_size]]
        width = len(batch[0].ids)
        ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        labels = torch.full((len(batch), width), -100, dtype=torch.long)
        for row, w in enumerate(batch):  # right padding: every row starts at position 0
            n = len(w.ids)
            ids[row, :n] = torch.tensor(w.ids)
            mask[row, :n] = 1
            labels[row, n - w.scored:n] = ids[row, n - w.scored:n]
        with torch.inference_mode():
            logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
            nll = torch.nn.functional.cross_entropy(logits[:, :-1].float().transpose(1, 2), labels[:, 1:].to(device),
                                                    ignore_index=-100, reduction="sum")
        total += float(nll.double())
        if progress is not None:
            progress.update(sum(w.scored for w in batch))
    return total


def start_token(tokenizer) -> tuple[int, str]:
    if tokenizer.bos_token_id is not None:
        return tokenizer.bos_token_id, "bos"
    if tokenizer.eos_token_id is not None:
        return tokenizer.eos_token_id, "eos"
    raise FireflyError("the tokenizer has neither a BOS nor an EOS token to start a document from")


def context_length(config) -> int | None:
    n = getattr(config, "max_position_embeddings", None)
    return n if isinstance(n, int) and n > 1 else None


def bits_per_char(model, tokenizer, docs: list[str], block_size: int, stride: int, batch_size: int,
                  progress: bool = True) -> dict:
    """The measurement on documents already read: totals and the three rates (see the module docstring)."""
    from tqdm import tqdm

    start_id, start_kind = start_token(tokenizer)
    encoded = tokenizer(docs, add_special_tokens=False)["input_ids"]
    wins = [w for ids in encoded for w in windows(ids, start_id, block_size, stride)]
    tokens = sum(len(ids) for ids in encoded)
    chars = sum(len(d) for d in docs)
    n_bytes = sum(len(d.encode("utf-8")) for d in docs)
    with tqdm(total=tokens, unit="tok", desc="bits per char", disable=not progress) as bar:
        nats = score_windows(model, wins, tokenizer.pad_token_id, batch_size, bar)
    bits = nats / math.log(2)
    return {"documents": len(docs), "chars": chars, "bytes": n_bytes, "tokens": tokens, "windows": len(wins),
            "nll_bits": bits, "bits_per_char": bits / chars, "bits_per_byte": bits / n_bytes,
            "bits_per_token": bits / tokens, "tokens_per_char": tokens / chars,
            "context": {"start_token": start_kind, "block_size": block_size, "stride": stride}}


def _limit_chars(docs: list[str], max_chars: int | None) -> list[str]:
    if max_chars is None:
        return docs
    kept, n = [], 0
    for d in docs:
        if n >= max_chars:
            break
        kept.append(d)
        n += len(d)
    return kept


def run(args) -> int:
    t0 = time.time()
    if args.batch_size < 1:
        raise FireflyError("--batch-size must be at least 1")
    if args.max_chars is not None and args.max_chars < 1:
        raise FireflyError("--max-chars must be at least 1")
    from transformers import AutoConfig

    docs = _limit_chars(read_corpus(args.text), args.max_chars)
    model_block = checkpoints.describe(args.ckpt)
    limit = context_length(AutoConfig.from_pretrained(model_block["base"]))
    block = args.block_size or min(DEFAULT_BLOCK, limit or DEFAULT_BLOCK)
    if block < 2 or (limit is not None and block > limit):
        raise FireflyError(f"--block-size must be between 2 and the model's context length ({limit}), got {block}")
    stride = args.stride or max(1, block // 2)
    if not 0 < stride < block:
        raise FireflyError(f"--stride must be between 1 and --block-size - 1 ({block - 1}), got {stride}")
    device = args.device or default_device()
    model, tokenizer, _ = checkpoints.load(args.ckpt, device=device)
    if args.tokenizer:
        from firefly_train.vocab.embeddings import resize_and_init

        grown = load_tokenizer(args.tokenizer)
        added = resize_and_init(model, tokenizer, grown, args.embedding_init)
        tokenizer = grown
        model_block.update(tokenizer=str(args.tokenizer), embedding_init=args.embedding_init, added_tokens=added)
    measured = bits_per_char(model, tokenizer, docs, block, stride, args.batch_size)
    result = {"format": 1, "kind": "bits_per_char", "model": model_block,
              "text": {"path": str(args.text), "sha256": file_sha256(args.text), "max_chars": args.max_chars},
              **measured, "device": device, "dtype": str(next(model.parameters()).dtype).replace("torch.", ""),
              "versions": library_versions(), "wall_time_s": round(time.time() - t0, 2)}
    results.save(args.output, result)
    print(f"{args.ckpt}: {result['bits_per_char']:.4f} bits/char, {result['bits_per_byte']:.4f} bits/byte, "
          f"{result['tokens_per_char']:.3f} tokens/char ({result['chars']} chars, {result['tokens']} tokens) "
          f"-> {args.output}")
    return 0
