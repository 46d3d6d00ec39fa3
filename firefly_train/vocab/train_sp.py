"""Train a Chinese SentencePiece model on the user's corpus (`firefly-train vocab train`)."""
from __future__ import annotations

import io
import logging
import os
import time
from pathlib import Path

from firefly_core.errors import FireflyError
from firefly_core.io import atomic_dir, write_json
from firefly_core.schemas import checked
from firefly_train.vocab.stats import read_corpus

log = logging.getLogger(__name__)
MODEL_NAME = "chinese_sp"

# Defaults for Chinese text that is merged into a base tokenizer afterwards.
CHINESE_DEFAULTS = dict(
    character_coverage=0.9995,  # keep all but the rarest characters (the base's byte fallback covers those)
    normalization_rule_name="identity",  # never alter the text (no NFKC folding of full-width punctuation)
    remove_extra_whitespaces=False,
    byte_fallback=False,  # the base tokenizer already has it; byte pieces would only duplicate its ids
    split_digits=True,  # numbers stay digit by digit, as in Llama
    max_sentence_length=1 << 16,  # bytes; news articles are one long line each
    input_sentence_size=2_000_000,  # sample at most this many lines, shuffled
    shuffle_input_sentence=True,
    max_sentencepiece_length=16,
)


def train(corpus: list[str | Path], vocab_size: int, out_dir: str | Path, model_type: str = "bpe") -> dict:
    """Train `out_dir/chinese_sp.model` (+ `.vocab`); returns what was done (also written as train_info.json)."""
    import sentencepiece as spm

    if model_type not in ("unigram", "bpe"):
        raise FireflyError(f"--model-type must be unigram or bpe, got {model_type!r}")
    if vocab_size < 10:
        raise FireflyError(f"--vocab-size must be at least 10, got {vocab_size}")
    texts = [t for p in corpus for t in read_corpus(p)]
    chars = sum(len(t) for t in texts)
    model = io.BytesIO()
    started = time.time()
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(texts), model_writer=model, vocab_size=vocab_size, model_type=model_type,
            num_threads=os.cpu_count() or 1, minloglevel=2, **CHINESE_DEFAULTS)
    except RuntimeError as e:  # e.g. "Vocabulary size too high (N). Please set it to a value <= M."
        raise FireflyError(f"SentencePiece training failed: {str(e).splitlines()[-1]}") from None
    seconds = time.time() - started
    sp = spm.SentencePieceProcessor(model_proto=model.getvalue())
    info = {"format": 1, "kind": "vocab_train", "corpus": [str(p) for p in corpus], "lines": len(texts),
            "chars": chars, "model_type": model_type, "vocab_size": sp.get_piece_size(),
            "options": CHINESE_DEFAULTS, "train_seconds": round(seconds, 2)}
    with atomic_dir(out_dir) as tmp:
        (tmp / f"{MODEL_NAME}.model").write_bytes(model.getvalue())
        with open(tmp / f"{MODEL_NAME}.vocab", "w", encoding="utf-8") as f:
            for i in range(sp.get_piece_size()):
                f.write(f"{sp.id_to_piece(i)}\t{sp.get_score(i):g}\n")
        write_json(tmp / "train_info.json", checked("vocab_train", info))
    log.info("trained %s pieces (%s) on %d chars in %.1f s -> %s", info["vocab_size"], model_type, chars,
             seconds, Path(out_dir) / f"{MODEL_NAME}.model")
    return info
