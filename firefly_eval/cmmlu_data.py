"""A CMMLU data folder: layout check, CSV validation (file and line named), subject categories.

The folder is CMMLU's own layout: `dev/<subject>.csv` (the 5 few-shot examples) and `test/<subject>.csv`,
each with the header `,Question,A,B,C,D,Answer`, optionally `categories.json` (CMMLU's `src/categories.py`
dumped to JSON). Nothing is ever downloaded: a missing folder is an error that names this layout.
"""
from __future__ import annotations

import csv
import hashlib
from pathlib import Path

from firefly_core.errors import FireflyError, InputError
from firefly_core.io import file_sha256, read_json
from firefly_eval.benchmarks import CMMLU_CATEGORIES, CMMLU_SHOTS

HEADER = ["", "Question", "A", "B", "C", "D", "Answer"]
LAYOUT = "{dev,test}/<subject>.csv with header ',Question,A,B,C,D,Answer'"


def known_subjects() -> list[str]:
    """The 67 CMMLU subjects OpenCompass has prompts for."""
    from opencompass.configs.datasets.cmmlu.cmmlu_ppl_041cbf import cmmlu_subject_mapping

    return list(cmmlu_subject_mapping)


def validate_csv(path: Path, min_rows: int = 1) -> int:
    """Check one subject file; return its number of questions."""
    try:
        with open(path, encoding="utf-8", newline="") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if header is None or [h.strip() for h in header] != HEADER:
                raise InputError(path, f"bad header {header!r}: expected ',Question,A,B,C,D,Answer'", line=1)
            n = 0
            for row in reader:
                line = reader.line_num
                if not row:
                    continue
                if len(row) != 7:
                    raise InputError(path, f"expected 7 columns (index,Question,A,B,C,D,Answer), got {len(row)}",
                                     line=line)
                if row[6].strip() not in ("A", "B", "C", "D"):
                    raise InputError(path, f"Answer must be A, B, C or D, got {row[6]!r}", line=line,
                                     field="Answer")
                if not row[1].strip():
                    raise InputError(path, "empty Question", line=line, field="Question")
                n += 1
    except UnicodeDecodeError as e:
        raise InputError(path, f"not UTF-8 ({e.reason})") from None
    except csv.Error as e:
        raise InputError(path, f"malformed CSV: {e}") from None
    if n < min_rows:
        raise InputError(path, f"has {n} questions, needs at least {min_rows}")
    return n


def check_data_dir(data_dir: str | Path, subjects: list[str] | None = None) -> dict[str, int]:
    """Validate the folder (all subjects, or the chosen ones); return {subject: number of test questions}."""
    root = Path(data_dir).expanduser()
    if not (root / "dev").is_dir() or not (root / "test").is_dir():
        raise FireflyError(f"CMMLU data folder {root} not found or incomplete: expected {LAYOUT} "
                           "(a copy of CMMLU's data/ folder; nothing is downloaded)")
    present = sorted(p.stem for p in (root / "test").glob("*.csv"))
    if not present:
        raise FireflyError(f"{root / 'test'} holds no <subject>.csv: expected {LAYOUT}")
    known = set(known_subjects())
    if subjects:
        for s in subjects:
            if s not in present:
                raise FireflyError(f"unknown subject '{s}': {root / 'test'} has {', '.join(present)}")
        chosen = list(dict.fromkeys(subjects))
    else:
        chosen = present
    unknown = [s for s in chosen if s not in known]
    if unknown:
        raise FireflyError(f"{root / 'test' / (unknown[0] + '.csv')}: '{unknown[0]}' is not a CMMLU subject "
                           f"(OpenCompass knows {len(known)}, e.g. agronomy, chinese_history)")
    counts = {}
    for s in chosen:
        dev = root / "dev" / f"{s}.csv"
        if not dev.is_file():
            raise InputError(dev, f"missing: every test subject needs its {CMMLU_SHOTS} few-shot examples ({LAYOUT})")
        validate_csv(dev, min_rows=CMMLU_SHOTS)
        counts[s] = validate_csv(root / "test" / f"{s}.csv")
    return counts


def data_hash(data_dir: str | Path, subjects: list[str]) -> str:
    """sha256 over the dev and test files of the evaluated subjects (names and contents)."""
    root = Path(data_dir)
    h = hashlib.sha256()
    for s in sorted(subjects):
        for split in ("dev", "test"):
            h.update(f"{split}/{s}.csv:{file_sha256(root / split / f'{s}.csv')}\n".encode())
    return h.hexdigest()


def subject_categories(data_dir: str | Path) -> tuple[dict, dict]:
    """({subject: [subcategory, ...]}, {category: [subcategory, ...]}) from the folder's categories.json,
    else the mapping OpenCompass ships (the same CMMLU `categories.py`)."""
    path = Path(data_dir) / "categories.json"
    if path.is_file():
        data = read_json(path)
        if not isinstance(data, dict) or not isinstance(data.get("subcategories"), dict) \
                or not isinstance(data.get("categories"), dict):
            raise InputError(path, "expected CMMLU's categories.py as JSON: keys 'subcategories', 'categories'")
        return data["subcategories"], data["categories"]
    from opencompass.configs.summarizers.groups import cmmlu

    return cmmlu.subcategories, cmmlu.categories


def category_subjects(data_dir: str | Path, subjects: list[str]) -> dict[str, list[str]]:
    """{category: [evaluated subjects in it]} for the five CMMLU categories (a subject may be in two)."""
    subcats, cats = subject_categories(data_dir)
    out = {}
    for cat in CMMLU_CATEGORIES:
        members = [s for s in subjects if set(subcats.get(s, [])) & set(cats.get(cat, []))]
        if members:
            out[cat] = members
    return out

