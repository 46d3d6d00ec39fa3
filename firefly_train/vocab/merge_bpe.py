"""Extend a byte-level BPE tokenizer (SmolLM2, Qwen, Llama 3: an HF tokenizer.json) with Chinese pieces.

Each piece of the added SentencePiece model becomes a new vocabulary entry reached by a chain of new
merges, all appended after the base merges:

* the piece's text is run through the base normalizer and pre-tokenizer; a piece that does not stay one
  pre-token (it could never be matched inside one word) or is made only of ASCII is skipped;
* its bytes are tokenized with the merges so far (base + new), giving units u1..um; the chain merges
  (u1,u2) -> u1u2, (u1u2,u3) -> u1u2u3, ... add every missing intermediate as a new token, reusing the
  tokens (base characters, earlier pieces and intermediates) that already exist;
* a chain step whose result is already a BASE token is never added (the piece is skipped): every new
  merge therefore produces a new token.

Why text without a new token stays exactly the same: BPE always applies the lowest-ranked applicable
merge, and every new merge ranks after every base merge, so all base merges run first and stop at the
base tokenization; a new merge then fires only if two adjacent base tokens form a new token's string,
i.e. the text contains a new token. Producing a new token never re-enables a base merge (base merges
only involve base tokens). Pieces are added shortest first, so longer pieces build on shorter ones.
"""
from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

from firefly_core.errors import FireflyError, InputError
from firefly_core.io import atomic_dir, write_json
from firefly_core.schemas import checked
from firefly_train.vocab.merge_sp import NORMAL, load_proto
from firefly_train.vocab.stats import tokenizer_kind

log = logging.getLogger(__name__)
# Files of an HF tokenizer folder that stay valid when only tokenizer.json's vocab and merges grow.
COPIED = ("tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja", "chat_template.json")


def bpe(word: str, ranks: dict[tuple[str, str], int]) -> list[str]:
    """HF tokenizers' BPE on one pre-token: repeatedly merge the lowest-ranked pair, leftmost first."""
    symbols = list(word)
    while len(symbols) > 1:
        best = min(((ranks.get(pair, -1), i) for i, pair in enumerate(zip(symbols, symbols[1:]))
                    if pair in ranks), default=None)
        if best is None:
            break
        i = best[1]
        symbols[i:i + 2] = [symbols[i] + symbols[i + 1]]
    return symbols


def candidate_texts(proto) -> list[str]:
    """The added model's pieces as plain text: word-start marker dropped, ASCII-only pieces left out
    (the base already covers ASCII and they would change English), duplicates removed, shortest first."""
    seen: dict[str, None] = {}
    for p in proto.pieces:
        text = p.piece.removeprefix("▁")
        if p.type != NORMAL or not text or "▁" in text or text.isascii():
            continue
        seen.setdefault(text, None)
    return sorted(seen, key=len)  # stable: equal lengths keep the added model's order (best first)


def extend(spec: dict, texts: list[str], pad_to_multiple_of: int | None = None) -> dict:
    """Add the pieces to a tokenizer.json dict in place; returns counts."""
    from tokenizers import Tokenizer

    base_tok = Tokenizer.from_str(json.dumps(spec))
    model = spec["model"]
    vocab: dict[str, int] = model["vocab"]
    raw = model["merges"]
    as_strings = bool(raw) and isinstance(raw[0], str)
    merges = [tuple(m.split(" ", 1)) if as_strings else tuple(m) for m in raw]
    ranks = {pair: i for i, pair in enumerate(merges)}
    base_vocab = set(vocab)
    next_id = max([*vocab.values(), *(t["id"] for t in spec.get("added_tokens", []))]) + 1
    counts = {"base_vocab": len(vocab), "base_merges": len(merges), "candidates": len(texts), "added_pieces": 0,
              "added_intermediates": 0, "skipped_in_base": 0, "skipped_not_one_word": 0,
              "skipped_base_intermediate": 0, "padding": 0}
    for text in texts:
        if base_tok.normalizer is not None:
            text = base_tok.normalizer.normalize_str(text)
        words = base_tok.pre_tokenizer.pre_tokenize_str(text)
        if len(words) != 1:
            counts["skipped_not_one_word"] += 1
            continue
        word = words[0][0]
        if word in vocab:  # a base token, or already made as another piece's intermediate
            counts["skipped_in_base"] += word in base_vocab
            continue
        units = bpe(word, ranks)
        chain, x = [], units[0]
        for u in units[1:]:
            chain.append((x, u))
            x += u
            if x in base_vocab:
                break
        if x in base_vocab:
            counts["skipped_base_intermediate"] += 1
            continue
        for left, right in chain:
            merged = left + right
            if merged not in vocab:
                vocab[merged] = next_id
                next_id += 1
                counts["added_pieces" if merged == word else "added_intermediates"] += 1
            if (left, right) not in ranks:
                ranks[(left, right)] = len(merges)
                merges.append((left, right))
    if pad_to_multiple_of:
        while next_id % pad_to_multiple_of:
            vocab[f"<|vocab_pad_{counts['padding']}|>"] = next_id  # no merge produces it: never emitted
            next_id += 1
            counts["padding"] += 1
    model["merges"] = [" ".join(m) for m in merges] if as_strings else [list(m) for m in merges]
    counts.update(vocab_size=next_id, new_merges=len(merges) - counts["base_merges"])
    return counts


def merge(base: str | Path, add: str | Path, out_dir: str | Path, pad_to_multiple_of: int | None = None) -> dict:
    """Write an HF tokenizer folder: the base's files with tokenizer.json grown by the added pieces."""
    from transformers import AutoTokenizer

    base, add = Path(base), Path(add)
    if tokenizer_kind(base) != "bytelevel_bpe":
        raise FireflyError(f"{base} is not a byte-level BPE tokenizer folder")
    tj = base / "tokenizer.json"
    spec = json.loads(tj.read_text(encoding="utf-8"))
    if spec["model"].get("continuing_subword_prefix") or spec["model"].get("end_of_word_suffix"):
        raise InputError(tj, "BPE with a subword prefix/suffix is not supported", field="model")
    texts = candidate_texts(load_proto(add))
    counts = extend(spec, texts, pad_to_multiple_of)
    info = {"format": 1, "kind": "vocab_merge", "base_kind": "bytelevel_bpe", "base": str(base), "added": str(add),
            **counts, "pad_to_multiple_of": pad_to_multiple_of}
    with atomic_dir(out_dir) as tmp:
        for name in COPIED:
            if (base / name).is_file():
                shutil.copy2(base / name, tmp / name)
        with open(tmp / "tokenizer.json", "w", encoding="utf-8") as f:
            json.dump(spec, f, ensure_ascii=False)
        tok = AutoTokenizer.from_pretrained(str(tmp))
        single = sum(len(tok.encode(t, add_special_tokens=False)) == 1 for t in texts)
        info["pieces_single_token"] = single
        write_json(tmp / "merge_info.json", checked("vocab_merge", info))
    log.info("added %d pieces + %d intermediate tokens (%d new merges): vocab %d -> %d -> %s",
             counts["added_pieces"], counts["added_intermediates"], counts["new_merges"], counts["base_vocab"],
             counts["vocab_size"], out_dir)
    return info
