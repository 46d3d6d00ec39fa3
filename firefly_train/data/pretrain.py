"""Continued-pretraining data: raw text -> token ids (cached) -> fixed-length blocks.

Input files (given directly or found under folders):
  * `.jsonl`: one document per line, `{"text": ...}` (the field is configurable);
  * `.txt`: documents separated by blank lines (line breaks inside a document are kept);
  * `.csv`: one document per row, from column "text" (the field) if present, else the first column.

Each file is tokenized once (in `num_proc` processes) and its ids are cached under `cache_dir`, keyed by
the tokenizer's fingerprint, the file's sha256 and the text field, so a rerun or a resumed run reads the
cache. Documents are joined as `doc1 EOS doc2 EOS ...` across all files and cut into `max_seq_length`
blocks; the remainder shorter than a block is dropped.
"""
from __future__ import annotations

import hashlib
import json
import re
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from firefly_core.errors import FireflyError, InputError
from firefly_core.io import atomic_open, file_sha256, iter_jsonl, require
from firefly_train.data import expand_paths

SUFFIXES = (".jsonl", ".txt", ".csv")
CACHE_VERSION = 1
CHUNK_DOCS = 256


class BlockDataset(torch.utils.data.Dataset):
    """Fixed-length blocks of token ids; each item is `{"input_ids", "labels"}` (labels = inputs)."""

    def __init__(self, blocks: np.ndarray):
        self.blocks = blocks

    def __len__(self) -> int:
        return len(self.blocks)

    def __getitem__(self, index: int) -> dict:
        ids = torch.from_numpy(self.blocks[index].astype(np.int64))
        return {"input_ids": ids, "labels": ids.clone()}


def find_text_files(paths: list[str]) -> list[Path]:
    """The corpus files among `paths` (files, or folders searched recursively); FireflyError if none."""
    return expand_paths(paths, SUFFIXES, "text")


def read_documents(path: Path, text_field: str = "text") -> list[str]:
    """The non-empty documents of one corpus file (see the module docstring for the formats)."""
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        return [text for line, obj in iter_jsonl(path) if (text := require(obj, text_field, str, path, line)).strip()]
    if suffix == ".txt":
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as e:
            raise InputError(path, f"not UTF-8 ({e.reason} at byte {e.start})") from None
        return [doc.strip() for doc in re.split(r"\n[ \t\r]*\n", text) if doc.strip()]
    import pandas as pd

    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError:
        return []
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as e:
        raise InputError(path, f"cannot parse CSV: {e}") from None
    column = text_field if text_field in frame.columns else frame.columns[0]
    return [doc for doc in frame[column].tolist() if doc.strip()]


def tokenizer_fingerprint(tokenizer) -> str:
    """A digest of everything that decides token ids: the tokenizer's model, normalizer and specials."""
    h = hashlib.sha256(type(tokenizer).__name__.encode())
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        h.update(backend.to_str().encode())
    else:
        h.update(json.dumps(sorted(tokenizer.get_vocab().items()), ensure_ascii=False).encode())
    h.update(json.dumps([tokenizer.bos_token_id, tokenizer.eos_token_id, len(tokenizer)]).encode())
    return h.hexdigest()


_worker_tokenizer = None


def _init_worker(tokenizer) -> None:
    global _worker_tokenizer
    _worker_tokenizer = tokenizer


def _tokenize_chunk(docs: list[str]) -> list[np.ndarray]:
    encoded = _worker_tokenizer(docs, add_special_tokens=False)["input_ids"]
    return [np.asarray(ids, dtype=np.int32) for ids in encoded]


def _tokenize_file(path: Path, docs: list[str], eos_id: int, pool: ProcessPoolExecutor | None) -> np.ndarray:
    chunks = [docs[i:i + CHUNK_DOCS] for i in range(0, len(docs), CHUNK_DOCS)]
    results = pool.map(_tokenize_chunk, chunks) if pool is not None else map(_tokenize_chunk, chunks)
    eos = np.asarray([eos_id], dtype=np.int32)
    pieces = []
    for encoded in tqdm(results, total=len(chunks), desc=f"tokenize {path.name}", unit=" chunk"):
        for ids in encoded:
            pieces += [ids, eos]
    return np.concatenate(pieces)


def build_pretrain_blocks(paths: list[str], tokenizer, max_seq_length: int, cache_dir: Path,
                          num_proc: int = 2, text_field: str = "text") -> tuple[BlockDataset, dict]:
    """Pack the corpus into blocks of `max_seq_length` tokens; returns (dataset, stats)."""
    if max_seq_length < 2:
        raise FireflyError(f"max_seq_length must be at least 2, got {max_seq_length}")
    if tokenizer.eos_token_id is None:
        raise FireflyError("the tokenizer has no EOS token to separate documents")
    files = find_text_files(paths)
    fingerprint = tokenizer_fingerprint(tokenizer)
    cache_dir = Path(cache_dir)
    entries = []
    for path in files:
        sha = file_sha256(path)
        key = hashlib.sha256(f"v{CACHE_VERSION}|{fingerprint}|{sha}|{text_field}".encode()).hexdigest()[:32]
        entries.append((path, sha, cache_dir / f"{key}.npz"))

    missing = [(path, cache) for path, _, cache in entries if not cache.is_file()]
    pool = None
    if missing and num_proc > 1:
        pool = ProcessPoolExecutor(num_proc, initializer=_init_worker, initargs=(tokenizer,))
    else:
        _init_worker(tokenizer)
    try:
        for path, cache in missing:
            docs = read_documents(path, text_field)
            if not docs:
                raise InputError(path, "empty corpus file: no text" + (
                    f" in field '{text_field}'" if path.suffix.lower() != ".txt" else ""))
            ids = _tokenize_file(path, docs, tokenizer.eos_token_id, pool)
            with atomic_open(cache, "wb", encoding=None) as f:
                np.savez(f, ids=ids, documents=np.int64(len(docs)))
    finally:
        if pool is not None:
            pool.shutdown()

    arrays, file_stats = [], []
    for path, sha, cache in entries:
        with np.load(cache) as data:
            ids, documents = data["ids"], int(data["documents"])
        arrays.append(ids)
        file_stats.append({"path": str(path), "sha256": sha, "documents": documents, "tokens": int(len(ids)),
                           "cached": all(cache != c for _, c in missing)})
    ids = np.concatenate(arrays)
    n_blocks = len(ids) // max_seq_length
    if n_blocks == 0:
        raise InputError(", ".join(map(str, files)),
                         f"corpus has {len(ids)} tokens, fewer than one block of max_seq_length={max_seq_length}")
    blocks = ids[: n_blocks * max_seq_length].reshape(n_blocks, max_seq_length)
    stats = {"files": file_stats, "blocks": n_blocks, "tokens": n_blocks * max_seq_length,
             "tail_dropped_tokens": int(len(ids) - n_blocks * max_seq_length)}
    return BlockDataset(blocks), stats
