"""What `cmmlu` and `leaderboard` share: the result file, its resume folder, the printed table."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from firefly_core.io import write_json
from firefly_core.schemas import checked


def default_output(kind: str) -> Path:
    return Path("results") / f"{kind}.json"


def resume_dir(output: Path, suffix: str, key: dict) -> Path:
    """`<output stem>.<suffix>/<hash of key>`: a rerun with the same model files, data and settings finds the
    work of an interrupted run there and continues it; anything different gets its own folder."""
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    return output.with_name(f"{output.stem}.{suffix}") / digest


def save(path: str | Path, result: dict) -> Path:
    """Write one result JSON atomically, checked against the schema of its kind (`firefly_core.schemas`)."""
    path = Path(path)
    write_json(path, checked(result["kind"], result))
    return path


def format_table(title: str, rows: list[tuple[str, float | None]], footer: tuple[str, float | None]) -> str:
    """A two-column text table: name, accuracy (percent, 2 decimals); the footer row under a rule."""
    width = max(len(name) for name, _ in [*rows, footer, (title, None)])
    rule = "-" * (width + 10)

    def fmt(v):
        return "     -" if v is None else f"{v:6.2f}"

    lines = [f"{title:<{width}}  {'acc':>6}", rule]
    lines += [f"{name:<{width}}  {fmt(v)}" for name, v in rows]
    lines += [rule, f"{footer[0]:<{width}}  {fmt(footer[1])}"]
    return "\n".join(lines)
