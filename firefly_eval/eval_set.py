"""Evaluation sets for the human pairwise evaluation: load, validate, import the seed's format.

Our format is JSONL (or a JSON array), one item a line (schema `eval_item` in `firefly_core.schemas`):
`{"id","task","prompt","objective":bool,"reference":str|null,"checker":{...}|null}`.
The seed's format (`.xlsx`, `.csv`, `.jsonl` or a `.json` array with columns `kind`, `instruction` and
optionally `output`/`reference`; BELLE's `class`, `question`, `std_answer` are read the same way) is
imported: its kinds are normalised (NFKC, spacing, case) and mapped to our task names, ids are made from the
task and the position within it (`math-03`). Also the `validate-set` subcommand.
"""
from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from firefly_core.errors import FireflyError, InputError
from firefly_core.io import atomic_open, iter_jsonl
from firefly_core.schemas import validate

# The 13 tasks of the seed's 130-item set, in the seed's table order.
TASKS = ("brainstorming", "classification", "closed_qa", "code", "extraction", "generation", "harmlessness",
         "math", "reading_comprehension", "open_qa", "rewrite", "summarization", "translation")
SEED_KINDS = {
    "brainstorming": "brainstorming", "classification": "classification", "close qa": "closed_qa",
    "code": "code", "extract": "extraction", "generation": "generation", "harmless": "harmlessness",
    "math": "math", "mrc": "reading_comprehension", "open qa": "open_qa", "rewrite": "rewrite",
    "summarization": "summarization", "translation": "translation",
}
# Other spellings met in public sets (BELLE's "closed qa", "extraction"...), and our own names.
KIND_ALIASES = {"closed qa": "closed_qa", "extraction": "extraction", "harmlessness": "harmlessness",
                "reading comprehension": "reading_comprehension", **{t.replace("_", " "): t for t in TASKS}}
# Imported items of these tasks are objective (the answer is right or wrong): the annotator marks each
# side, helped by the reference when the set has one.
OBJECTIVE_TASKS = frozenset({"classification", "closed_qa", "extraction", "math", "reading_comprehension"})
CHECKER_FIELDS = {"number": ("value", (int, float)), "choice": ("value", str), "contains_any": ("values", list),
                  "contains_all": ("values", list), "regex": ("pattern", str)}


@dataclass
class Item:
    id: str
    task: str
    prompt: str
    objective: bool
    reference: str | None = None
    checker: dict | None = None


@dataclass
class EvalSet:
    items: list[Item]
    path: Path
    hash: str  # sha256 of the canonical content: the same items give the same hash whatever the file form
    id: str  # the file stem
    by_id: dict[str, Item] = field(init=False, repr=False)

    def __post_init__(self):
        self.by_id = {it.id: it for it in self.items}

    def __len__(self) -> int:
        return len(self.items)


def content_hash(items: list[Item]) -> str:
    canon = json.dumps([asdict(it) for it in items], ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canon.encode("utf-8")).hexdigest()


def check_checker(checker, path, lineno) -> dict | None:
    """Validate a checker (an object or None, see docs/human_eval.md); returns it unchanged."""
    if checker is None:
        return None
    kind = checker.get("type")
    if kind not in CHECKER_FIELDS:
        raise InputError(path, f"unknown checker type {kind!r}; expected one of {', '.join(CHECKER_FIELDS)}",
                         line=lineno, field="checker.type")
    key, types = CHECKER_FIELDS[kind]
    value = checker.get(key)
    if not isinstance(value, types) or isinstance(value, bool):
        raise InputError(path, f"a '{kind}' checker needs '{key}'", line=lineno, field=f"checker.{key}")
    if isinstance(value, list) and (not value or not all(isinstance(v, str) and v for v in value)):
        raise InputError(path, "expected a non-empty list of non-empty strings", line=lineno,
                         field=f"checker.{key}")
    if kind == "choice" and not re.fullmatch(r"[A-Za-z]", value):
        raise InputError(path, f"expected one option letter, got {value!r}", line=lineno, field="checker.value")
    if kind == "regex":
        try:
            re.compile(value)
        except re.error as e:
            raise InputError(path, f"invalid regular expression: {e}", line=lineno, field="checker.pattern") from None
    return checker


def _text(obj: dict, key: str, path, lineno) -> str:
    if not obj[key].strip():
        raise InputError(path, "empty", line=lineno, field=key)
    return obj[key]


def _item_from_ours(obj: dict, path, lineno) -> Item:
    validate("eval_item", obj, path, lineno)
    return Item(id=_text(obj, "id", path, lineno), task=task_name(_text(obj, "task", path, lineno)),
                prompt=_text(obj, "prompt", path, lineno), objective=obj["objective"],
                reference=obj.get("reference"), checker=check_checker(obj.get("checker"), path, lineno))


def normalise_name(name: str) -> str:
    """A task or kind name compared as people read it: NFKC (a no-break space is a space, full-width
    letters are letters), case folded, runs of spaces, underscores and hyphens as one space."""
    return re.sub(r"[\s_-]+", " ", unicodedata.normalize("NFKC", name)).strip().casefold()


def task_name(kind: str) -> str:
    """Our task name for a set's kind (`SEED_KINDS`, `KIND_ALIASES`); other kinds keep their normalised
    name, spaces written as `_` (it becomes part of the item ids)."""
    key = normalise_name(kind)
    return SEED_KINDS.get(key) or KIND_ALIASES.get(key) or key.replace(" ", "_")


# Column names of seed-format files: ours first, then BELLE's eval_set.json.
_SEED_COLUMNS = {"kind": ("kind", "class"), "instruction": ("instruction", "question"),
                 "reference": ("reference", "output", "std_answer")}
_ZIP_MAGIC = b"PK\x03\x04"
_WHITESPACE = re.compile(r"\s*")  # skipped in place: slicing the text at every element is quadratic


def _column(row: dict, field: str):
    return next((row[k] for k in _SEED_COLUMNS[field] if row.get(k) is not None), None)


def _table_rows(path: Path) -> list[tuple[int, dict]]:
    """(row number, record) of an .xlsx or .csv; row numbers match what a spreadsheet shows (1 = header)."""
    import pandas as pd

    if path.suffix.lower() == ".xlsx":
        with open(path, "rb") as f:
            if f.read(4) != _ZIP_MAGIC:
                raise InputError(path, "not an .xlsx workbook (an .xlsx file is a zip archive; save the sheet "
                                       "as .xlsx, or name a CSV file .csv)")
        try:
            frame = pd.read_excel(path, dtype=str, engine="openpyxl")
        except Exception as e:  # noqa: BLE001 - any failure of the xlsx reader is a damaged file
            detail = str(e).splitlines()[0] if str(e) else ""
            raise InputError(path, f"damaged .xlsx file, cannot be read ({type(e).__name__}: {detail}); "
                                   "open and save it again, or export it as .csv") from None
    else:
        try:
            frame = pd.read_csv(path, dtype=str, encoding="utf-8")
        except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as e:
            detail = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise InputError(path, f"cannot read as a CSV table: {detail}") from None
    frame = frame.rename(columns=lambda c: normalise_name(str(c)).replace(" ", "_"))
    frame = frame.astype(object).where(frame.notna(), None)
    return [(i + 2, row) for i, row in enumerate(frame.to_dict("records"))]  # row 1 is the header


def _json_array_rows(path: Path) -> list[tuple[int, dict]]:
    """(line where the element starts, element) of a file holding one JSON array of objects."""
    try:
        text = path.read_text(encoding="utf-8-sig")  # a byte-order mark (Windows editors) is no text
    except UnicodeDecodeError as e:
        raise InputError(path, f"not UTF-8 ({e.reason})") from None
    decoder, rows = json.JSONDecoder(), []
    pos = _WHITESPACE.match(text).end()
    if not text.startswith("[", pos):
        raise InputError(path, "expected a JSON array of items ([{...}, ...]); one item a line is .jsonl",
                         line=text.count("\n", 0, pos) + 1)
    pos += 1
    while True:
        pos = _WHITESPACE.match(text, pos).end()
        if text.startswith("]", pos):
            break
        if rows:
            if not text.startswith(",", pos):
                raise InputError(path, "invalid JSON: expected ',' or ']' between items", line=text.count("\n", 0, pos) + 1)
            pos = _WHITESPACE.match(text, pos + 1).end()
        lineno = text.count("\n", 0, pos) + 1
        try:
            obj, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as e:
            raise InputError(path, f"invalid JSON: {e.msg} (column {e.colno})", line=e.lineno) from None
        if not isinstance(obj, dict):
            raise InputError(path, f"expected a JSON object, got {type(obj).__name__}", line=lineno)
        rows.append((lineno, obj))
    if text[pos + 1:].strip():
        raise InputError(path, "invalid JSON: text after the closing ']'", line=text.count("\n", 0, pos) + 1)
    return rows


def _text_cell(row: dict, field: str, path, lineno) -> str:
    value = _column(row, field)
    if not isinstance(value, str) or not value.strip():
        raise InputError(path, "missing or empty", line=lineno, field=_SEED_COLUMNS[field][0])
    return value


def _items_from_seed(rows: list[tuple[int, dict]], path: Path) -> list[Item]:
    items, per_task = [], Counter()
    for lineno, row in rows:
        task = task_name(_text_cell(row, "kind", path, lineno))
        instruction = _text_cell(row, "instruction", path, lineno)
        reference = _column(row, "reference")
        reference = str(reference).strip() if reference is not None and str(reference).strip() else None
        per_task[task] += 1
        item_id = str(row["id"]).strip() if row.get("id") else f"{task}-{per_task[task]:02d}"
        items.append(Item(id=item_id, task=task, prompt=instruction.strip(), objective=task in OBJECTIVE_TASKS,
                          reference=reference))
    return items


def _is_seed_record(obj: dict) -> bool:
    return "prompt" not in obj and any(k in obj for k in _SEED_COLUMNS["instruction"])


def load_set(path) -> EvalSet:
    """Read our format (.jsonl, or a .json array) or import the seed's (.xlsx/.csv/.jsonl/.json with `kind`,
    `instruction`). Errors name the file and the line (or spreadsheet row)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "file not found")
    suffix = path.suffix.lower()
    if suffix in (".xlsx", ".csv"):
        rows, seed = _table_rows(path), True
    elif suffix in (".jsonl", ".json"):
        rows = list(iter_jsonl(path)) if suffix == ".jsonl" else _json_array_rows(path)
        seed = bool(rows) and _is_seed_record(rows[0][1])
    else:
        raise InputError(path, f"unknown evaluation set format '{suffix}'; expected .jsonl, .json (an array), "
                               ".xlsx or .csv")
    if seed:
        items = _items_from_seed(rows, path)
    else:
        items = [_item_from_ours(obj, path, lineno) for lineno, obj in rows]
    if not items:
        raise InputError(path, "no items")
    seen = {}
    for (lineno, _), it in zip(rows, items):
        if it.id in seen:
            where = "row" if suffix in (".xlsx", ".csv") else "line"
            raise InputError(path, f"duplicate id {it.id!r} (first at {where} {seen[it.id]})", line=lineno,
                             field="id")
        seen[it.id] = lineno
    return EvalSet(items=items, path=path, hash=content_hash(items), id=path.stem)


def validate_set(eval_set: EvalSet, expect_per_task: int | None = 10, expect_tasks: int | None = 13) -> list[str]:
    """Problems that don't stop the set loading: counts per task, checkers on open-ended items, repeats.
    (An objective item without reference or checker is fine: the annotator judges it.)"""
    problems = []
    counts = Counter(it.task for it in eval_set.items)
    if expect_tasks is not None and len(counts) != expect_tasks:
        problems.append(f"{len(counts)} tasks, expected {expect_tasks}")
    if expect_per_task is not None:
        for task, n in counts.items():
            if n != expect_per_task:
                problems.append(f"task '{task}' has {n} items, expected {expect_per_task}")
    for it in eval_set.items:
        if it.checker is not None and not it.objective:
            problems.append(f"item '{it.id}' has a checker but is not marked objective")
    prompts = Counter(it.prompt.strip() for it in eval_set.items)
    for it in eval_set.items:
        if prompts[it.prompt.strip()] > 1:
            problems.append(f"item '{it.id}' has the same prompt as another item")
    return problems


# --- `firefly-eval validate-set` ---------------------------------------------------------------------

def add_arguments(parser) -> None:
    parser.add_argument("set", help="evaluation set: our .jsonl/.json, or the seed's .xlsx/.csv/.jsonl/.json")
    parser.add_argument("--per-task", type=int, default=10, help="items expected per task (0: don't check)")
    parser.add_argument("--tasks", type=int, default=13, help="number of tasks expected (0: don't check)")
    parser.add_argument("--export", metavar="OUT.jsonl",
                        help="write the (imported) set in our JSONL format (only when there is no problem)")


def run(args) -> int:
    eval_set = load_set(args.set)
    counts = Counter(it.task for it in eval_set.items)
    objective = Counter(it.task for it in eval_set.items if it.objective)
    print(f"{eval_set.path}: {len(eval_set)} items, {len(counts)} tasks, sha256 {eval_set.hash}")
    width = max(len(t) for t in counts)
    for task, n in counts.items():
        print(f"  {task:<{width}}  {n:3d} items  {objective[task]:3d} objective")
    problems = validate_set(eval_set, args.per_task or None, args.tasks or None)
    for p in problems:
        print(f"  problem: {p}")
    if problems:
        unwritten = f"; {args.export} not written" if args.export else ""
        raise FireflyError(f"{len(problems)} problem(s) in {eval_set.path}{unwritten}")
    if args.export:
        try:
            with atomic_open(args.export) as f:
                for it in eval_set.items:
                    f.write(json.dumps(asdict(it), ensure_ascii=False) + "\n")
        except OSError as e:
            raise FireflyError(f"cannot write {args.export}: {e.strerror}") from None
        print(f"wrote {args.export}")
    print("ok")
    return 0
