"""Training data: raw-text blocks for continued pretraining, masked conversations for SFT, and batch
collation (the chat templates live in `firefly_core.templates`: generation uses them too).

- `pretrain.py`: find `.jsonl`/`.txt`/`.csv` corpora, tokenize once (cached on disk), pack into blocks.
- `sft.py`: read Firefly / `messages` JSONL, encode with a template, truncate turn-aware.
- `collate.py`: padded batches or packed rows (position ids restart per sample, no cross-sample attention).
"""
from __future__ import annotations

from pathlib import Path

from firefly_core.errors import FireflyError, InputError


def expand_paths(paths: list[str], suffixes: tuple[str, ...], what: str) -> list[Path]:
    """Files given directly plus every file with one of `suffixes` under given folders (sorted, deduplicated)."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw).expanduser()
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in suffixes)
        elif path.is_file():
            if path.suffix.lower() not in suffixes:
                raise InputError(path, f"unsupported {what} file type '{path.suffix}' (expected {', '.join(suffixes)})")
            found.append(path)
        else:
            raise InputError(path, "file or folder not found")
    unique = list(dict.fromkeys(p.resolve() for p in found))
    if not unique:
        raise FireflyError(f"no {what} files ({', '.join(suffixes)}) found in: {', '.join(map(str, paths))}")
    return unique
