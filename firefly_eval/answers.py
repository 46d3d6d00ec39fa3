"""The answers file of `firefly-eval generate`, read by one reader for the generator's resume, the judging app
and the report.

Line 1 is the header (schema `answers_header` in `firefly_core.schemas`), then one line per item (`answer`).
Checked on every read: the header comes first, every line fits its schema, no id is answered twice. Given the
evaluation set, the header's `set_hash` must be the set's and every id one of its items.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from firefly_core.errors import FireflyError, InputError
from firefly_core.io import jsonl_object
from firefly_core.schemas import validate
from firefly_eval.eval_set import EvalSet


@dataclass
class Answers:
    """One model's answers file."""
    path: Path
    header: dict
    by_id: dict[str, str]  # item id -> answer, in file order
    seeds: dict[str, int]  # item id -> the seed it was sampled with (where recorded)
    tokens: dict[str, int]  # item id -> new tokens generated (where recorded)
    good_end: int  # bytes of whole lines: short of the file's size when a torn last line was left out

    @property
    def model(self) -> str:
        return self.header["model"]

    @property
    def n(self) -> int:
        return len(self.by_id)

    @property
    def mean_tokens(self) -> float | None:
        return sum(self.tokens.values()) / len(self.tokens) if self.tokens else None

    @property
    def at_cap(self) -> int | None:
        """Answers whose token count reached the header's max_new_tokens (cut, not finished); None if unknown."""
        cap = (self.header.get("sampling") or {}).get("max_new_tokens")
        return sum(t >= cap for t in self.tokens.values()) if cap is not None and self.tokens else None


def _torn(line: bytes) -> bool:
    """A last line without its newline that is not JSON: a write cut short."""
    try:
        json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return True
    return False


def _header(obj: dict, path: Path, lineno: int, eval_set: EvalSet | None) -> dict:
    if obj.get("kind") != "answers_header":
        raise InputError(path, "first line must be the answers header (kind 'answers_header')", line=lineno,
                         field="kind")
    validate("answers_header", obj, path, lineno)
    if eval_set is not None and obj["set_hash"] != eval_set.hash:
        raise FireflyError(f"{path} answers a different evaluation set (set_hash {obj['set_hash'][:12]}, "
                           f"{eval_set.path} has {eval_set.hash[:12]})")
    return obj


def read_answers(path, eval_set: EvalSet | None = None, lenient_tail: bool = False) -> Answers:
    """Read and check an answers file (errors name the file, line and field); see the module docstring.

    With `lenient_tail`, a torn last line is left out rather than refused; `good_end` then says where the whole
    lines end, so the writer can cut the rest away before it appends.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "file not found")
    raw = path.read_bytes()
    lines = raw.split(b"\n")
    good_end = len(raw)
    if lenient_tail and lines[-1].strip() and _torn(lines[-1]):
        good_end -= len(lines.pop())
    header, by_id, seeds, tokens = None, {}, {}, {}
    for lineno, line in enumerate(lines, 1):
        obj = jsonl_object(line, path, lineno)
        if obj is None:
            continue
        if header is None:
            header = _header(obj, path, lineno, eval_set)
            continue
        item_id = validate("answer", obj, path, lineno)["id"]
        if eval_set is not None and item_id not in eval_set.by_id:
            raise InputError(path, f"id {item_id!r} is not in set {eval_set.path}", line=lineno, field="id")
        if item_id in by_id:
            raise InputError(path, f"duplicate answer for id {item_id!r}", line=lineno, field="id")
        by_id[item_id] = obj["answer"]
        if "seed" in obj:
            seeds[item_id] = obj["seed"]
        if "tokens" in obj:
            tokens[item_id] = obj["tokens"]
    if header is None:
        raise InputError(path, "empty answers file (no header line)")
    return Answers(path, header, by_id, seeds, tokens, good_end)


def load_answers(path, eval_set: EvalSet) -> Answers:
    """One model's answers to every item of `eval_set` (what the judging app shows)."""
    answers = read_answers(path, eval_set)
    missing = [it.id for it in eval_set.items if it.id not in answers.by_id]
    if missing:
        shown = ", ".join(missing[:10]) + (f", ... ({len(missing)} in all)" if len(missing) > 10 else "")
        raise FireflyError(f"{answers.path} does not answer every item of {eval_set.path}: missing {shown} "
                           "(finish it with the same `firefly-eval generate` command: it resumes)")
    return answers
