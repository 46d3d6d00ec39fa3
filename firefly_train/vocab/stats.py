"""Read text corpora, load any tokenizer kind, and measure how many tokens each spends on a corpus.

A corpus file is `.txt` (one text a non-blank line), `.jsonl` (`{"text": ...}` a line) or `.csv` (a `text`
column). The result of `measure` is the `vocab stats` JSON of docs/CONTRACTS.md.
"""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from firefly_core.errors import FireflyError, InputError
from firefly_core.io import iter_jsonl, require
from firefly_core.models import EMBEDDED, resolve_model
from firefly_core.schemas import checked

SP_MODEL = "tokenizer.model"
BATCH = 256


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            try:
                yield lineno, raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise InputError(path, f"not UTF-8 ({e.reason} at byte {e.start} of the line)", line=lineno) from None


def read_corpus(path: str | Path) -> list[str]:
    """The texts of one corpus file; an empty or non-UTF-8 file is an InputError naming it."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "corpus file not found")
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        texts = [require(obj, "text", str, path, lineno) for lineno, obj in iter_jsonl(path)]
    elif suffix == ".csv":
        try:
            content = path.read_bytes().decode("utf-8-sig")
        except UnicodeDecodeError as e:
            raise InputError(path, f"not UTF-8 ({e.reason} at byte {e.start})") from None
        reader = csv.DictReader(content.splitlines())
        if reader.fieldnames is not None and "text" not in reader.fieldnames:
            raise InputError(path, f"no 'text' column (columns: {', '.join(reader.fieldnames)})", field="text")
        texts = [row["text"] or "" for row in reader]
    elif suffix in (".txt", ""):
        texts = [line.rstrip("\r\n") for _, line in _lines(path)]
    else:
        raise InputError(path, f"unsupported corpus format '{suffix}' (use .txt, .jsonl or .csv)")
    texts = [t for t in texts if t.strip()]
    if not texts:
        raise InputError(path, "empty corpus: no text in this file")
    return texts


@dataclass
class Counter:
    """A loaded tokenizer reduced to what measuring needs."""

    name: str
    path: str
    vocab_size: int
    encode: Callable[[list[str]], list[list[int]]]


def tokenizer_kind(path: str | Path) -> str:
    """'sentencepiece' (a .model file, or a folder whose tokenizer is one), 'bytelevel_bpe' (an HF
    tokenizer.json with a BPE model and a ByteLevel pre-tokenizer), 'hf' (another HF tokenizer folder).
    Anything else is a FireflyError."""
    path = Path(path)
    if path.is_file():
        if path.suffix == ".model":
            return "sentencepiece"
        raise FireflyError(f"unsupported tokenizer {path}: expected a SentencePiece .model file or an HF "
                           "tokenizer folder")
    if not path.is_dir():
        raise FireflyError(f"tokenizer {path} not found")
    tj = path / "tokenizer.json"
    if tj.is_file():
        try:
            spec = json.loads(tj.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise InputError(tj, f"unreadable tokenizer.json ({e})") from None
        if spec.get("model", {}).get("type") == "BPE" and _has_bytelevel(spec.get("pre_tokenizer")):
            return "bytelevel_bpe"
    if (path / SP_MODEL).is_file():
        return "sentencepiece"
    if tj.is_file() or (path / "tokenizer_config.json").is_file():
        return "hf"
    raise FireflyError(f"unsupported tokenizer {path}: no tokenizer.json, tokenizer.model or tokenizer_config.json")


def _has_bytelevel(pre) -> bool:
    if not isinstance(pre, dict):
        return False
    if pre.get("type") == "ByteLevel":
        return True
    return any(_has_bytelevel(p) for p in pre.get("pretokenizers", []) or [])


def resolve_tokenizer_path(ref: str) -> Path:
    """A path as given, or an embedded model alias (its cached HF folder)."""
    return resolve_model(ref) if ref in EMBEDDED and not Path(ref).exists() else Path(ref)


def load_counter(ref: str) -> Counter:
    path = resolve_tokenizer_path(ref)
    kind = tokenizer_kind(path)
    # tokenizer.model files are told apart by their folder (llama2/tokenizer.model, chinese-llama2/...)
    name = path.name if path.is_dir() else path.parent.name if path.name == SP_MODEL else path.stem
    if kind == "sentencepiece" and (path.is_file() or not (path / "tokenizer.json").is_file()):
        import sentencepiece as spm

        model = path if path.is_file() else path / SP_MODEL
        try:
            sp = spm.SentencePieceProcessor(model_file=str(model))
        except (RuntimeError, OSError) as e:
            raise FireflyError(f"cannot load SentencePiece model {model}: {e}") from None
        return Counter(name, str(path), sp.get_piece_size(), lambda texts: sp.encode(texts))
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(str(path))
    except (OSError, ValueError) as e:
        raise FireflyError(f"cannot load tokenizer {path}: {e}") from None
    return Counter(name, str(path), len(tok), lambda texts: tok(texts, add_special_tokens=False)["input_ids"])


def _unique_names(counters: list[Counter]) -> None:
    seen: dict[str, int] = {}
    for c in counters:
        n = seen.get(c.name, 0)
        seen[c.name] = n + 1
        if n:
            c.name = f"{c.name}#{n + 1}"


def measure(tokenizers: list[str], corpus: list[str], progress_min_chars: int = 200_000) -> dict:
    """Token counts of each tokenizer on each corpus file; reductions are against the first tokenizer."""
    from tqdm import tqdm

    counters = [load_counter(t) for t in tokenizers]
    _unique_names(counters)
    files = [(str(p), read_corpus(p)) for p in corpus]
    total_chars = sum(len(t) for _, texts in files for t in texts)
    rows = [{"path": p, "chars": sum(len(t) for t in texts), "tokens": {}} for p, texts in files]
    for c in counters:
        with tqdm(total=total_chars, unit="char", unit_scale=True, desc=c.name,
                  disable=total_chars < progress_min_chars) as bar:
            for row, (_, texts) in zip(rows, files):
                n = 0
                for i in range(0, len(texts), BATCH):
                    batch = texts[i:i + BATCH]
                    n += sum(len(ids) for ids in c.encode(batch))
                    bar.update(sum(len(t) for t in batch))
                row["tokens"][c.name] = n
    totals = {c.name: sum(r["tokens"][c.name] for r in rows) for c in counters}
    first = totals[counters[0].name]
    return checked("vocab_stats", {
        "format": 1, "kind": "vocab_stats",
        "tokenizers": [{"name": c.name, "path": c.path, "vocab_size": c.vocab_size} for c in counters],
        "files": rows,
        "total": {
            "chars": total_chars,
            "tokens": totals,
            "tokens_per_char": {k: v / total_chars for k, v in totals.items()},
            "reduction_vs_first": {k: (1 - v / first) if first else 0.0 for k, v in totals.items()},
        },
    })


def format_table(result: dict) -> str:
    """A plain-text table: one row per file and a total row, tokens and tokens/char per tokenizer."""
    names = [t["name"] for t in result["tokenizers"]]
    header = ["file", "chars"] + [f"{n} tokens" for n in names] + [f"{n} tok/char" for n in names]
    body = [[Path(r["path"]).name, str(r["chars"])] + [str(r["tokens"][n]) for n in names]
            + [f"{r['tokens'][n] / r['chars']:.3f}" for n in names] for r in result["files"]]
    tot = result["total"]
    body.append(["TOTAL", str(tot["chars"])] + [str(tot["tokens"][n]) for n in names]
                + [f"{tot['tokens_per_char'][n]:.3f}" for n in names])
    widths = [max(len(row[i]) for row in [header] + body) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)) for row in [header] + body]
    lines.append("")
    lines += [f"{n}: vocab {t['vocab_size']}, {100 * tot['reduction_vs_first'][n]:.2f}% fewer tokens than {names[0]}"
              for n, t in zip(names, result["tokenizers"])]
    return "\n".join(lines)
