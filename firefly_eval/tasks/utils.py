"""Loaders for the leaderboard tasks: the user's local copies of the original files -> the HF schema
lm-eval's own task definitions expect (so prompts, targets and metrics stay lm-eval's).

Referenced by the task YAMLs as `custom_dataset: !function utils.load_*`; lm-eval calls them with the
YAML's `dataset_kwargs` (`data_dir`, and `subject` for MMLU). Bad rows raise `InputError` naming file and line.
"""
from __future__ import annotations

import csv
from pathlib import Path

import datasets
from lm_eval.tasks.hellaswag.utils import process_docs as hellaswag_process_docs  # noqa: F401 (YAML)
from lm_eval.tasks.truthfulqa.utils import process_results_mc2  # noqa: F401 (used by the YAML)

from firefly_core.errors import FireflyError, InputError
from firefly_core.io import iter_jsonl, read_json, require

LAYOUT = {
    "mmlu": "mmlu/{dev,test}/<subject>_{dev,test}.csv (hendrycks MMLU, no header: question,A,B,C,D,answer)",
    "arc_challenge": "arc_challenge/ARC-Challenge-{Train,Test}.jsonl",
    "hellaswag": "hellaswag/hellaswag_val.jsonl (rowanz format) or hellaswag/hellaswag_val.derived.jsonl",
    "truthfulqa_mc2": "truthfulqa/v0/mc_task.json or truthfulqa/mc_task.json (the revised set: read only without v0/)",
}


def _need(path: Path, task: str) -> Path:
    if not path.is_file():
        raise FireflyError(f"{path} not found: the {task} data is expected as <data-dir>/{LAYOUT[task]} "
                           "(nothing is downloaded)")
    return path


def mmlu_subjects(data_dir: str | Path) -> list[str]:
    test = Path(data_dir) / "mmlu" / "test"
    subjects = sorted(p.name[: -len("_test.csv")] for p in test.glob("*_test.csv"))
    if not subjects:
        raise FireflyError(f"no MMLU subjects in {test}: expected <data-dir>/{LAYOUT['mmlu']}")
    return subjects


def _read_mmlu_csv(path: Path, subject: str) -> list[dict]:
    rows = []
    with open(_need(path, "mmlu"), encoding="utf-8", newline="") as f:
        reader = csv.reader(f)
        for row in reader:
            if len(row) != 6:
                raise InputError(path, f"expected 6 columns (question,A,B,C,D,answer), got {len(row)}",
                                 line=reader.line_num)
            if row[5].strip() not in ("A", "B", "C", "D"):
                raise InputError(path, f"answer must be A, B, C or D, got {row[5]!r}", line=reader.line_num)
            rows.append({"question": row[0], "subject": subject, "choices": row[1:5],
                         "answer": "ABCD".index(row[5].strip())})
    if not rows:
        raise InputError(path, "no questions")
    return rows


def load_mmlu(data_dir: str, subject: str, **_) -> datasets.DatasetDict:
    """cais/mmlu schema: question, subject, choices[4], answer (index). `dev` holds the 5 few-shot rows."""
    root = Path(data_dir) / "mmlu"
    return datasets.DatasetDict({split: datasets.Dataset.from_list(
        _read_mmlu_csv(root / split / f"{subject}_{split}.csv", subject)) for split in ("dev", "test")})


def _read_arc(path: Path) -> list[dict]:
    rows = []
    for line, obj in iter_jsonl(_need(path, "arc_challenge")):
        q = require(obj, "question", dict, path, line)
        choices = require(q, "choices", list, path, line)
        labels = [c.get("label") for c in choices if isinstance(c, dict)]
        key = require(obj, "answerKey", str, path, line)
        if len(labels) != len(choices) or key not in labels:
            raise InputError(path, f"answerKey {key!r} is not one of the choice labels {labels}", line=line)
        rows.append({"id": str(obj.get("id", line)), "question": require(q, "stem", str, path, line),
                     "choices": {"text": [c["text"] for c in choices], "label": labels}, "answerKey": key})
    return rows


def load_arc(data_dir: str, **_) -> datasets.DatasetDict:
    """allenai/ai2_arc schema: id, question, choices{text,label}, answerKey. `train` is the few-shot pool."""
    root = Path(data_dir) / "arc_challenge"
    return datasets.DatasetDict({split.lower(): datasets.Dataset.from_list(
        _read_arc(root / f"ARC-Challenge-{split}.jsonl")) for split in ("Train", "Test")})


def hellaswag_files(data_dir: str | Path) -> tuple[Path, Path | None]:
    """(validation file, train file or None)."""
    root = Path(data_dir) / "hellaswag"
    val = next((p for p in (root / "hellaswag_val.jsonl", root / "hellaswag_val.derived.jsonl") if p.is_file()),
               root / "hellaswag_val.jsonl")
    train = root / "hellaswag_train.jsonl"
    return _need(val, "hellaswag"), train if train.is_file() else None


def _read_hellaswag(path: Path) -> list[dict]:
    """Rowan/hellaswag schema. The derived file has `ctx` only: it becomes ctx_a with an empty ctx_b."""
    rows = []
    for line, obj in iter_jsonl(path):
        endings = require(obj, "endings", list, path, line)
        label = require(obj, "label", (int, str), path, line)
        if str(label) not in {str(i) for i in range(len(endings))}:
            raise InputError(path, f"label {label!r} is not an index into {len(endings)} endings", line=line,
                             field="label")
        ctx_a = obj["ctx_a"] if "ctx_a" in obj else require(obj, "ctx", str, path, line)
        rows.append({"activity_label": require(obj, "activity_label", str, path, line), "ctx_a": ctx_a,
                     "ctx_b": obj.get("ctx_b", ""), "endings": endings, "label": str(label)})
    return rows


def load_hellaswag(data_dir: str, **_) -> datasets.DatasetDict:
    val, train = hellaswag_files(data_dir)
    splits = {"validation": _read_hellaswag(val)}
    if train is not None:
        splits["train"] = _read_hellaswag(train)
    return datasets.DatasetDict({k: datasets.Dataset.from_list(v) for k, v in splits.items()})


TRUTHFULQA_V0 = "truthfulqa/v0/mc_task.json"
TRUTHFULQA_REVISED = "truthfulqa/mc_task.json"


def truthfulqa_file(data_dir: str | Path) -> Path:
    """The question file: `v0/mc_task.json`, the original set that lm-eval's `truthful_qa` dataset (and the
    Open LLM Leaderboard) uses. The top-level `mc_task.json` is the TruthfulQA repository's later revision (its
    questions are reordered, one is reworded and about a quarter have changed answer lists), so scores on it are
    not comparable: it is read only when `v0/` is absent, and `leaderboard` then prints a note and names the file
    in its result JSON."""
    root = Path(data_dir)
    v0, revised = root / TRUTHFULQA_V0, root / TRUTHFULQA_REVISED
    if (root / "truthfulqa" / "v0").is_dir() or not revised.is_file():
        return _need(v0, "truthfulqa_mc2")
    return revised


def load_truthfulqa(data_dir: str, **_) -> datasets.DatasetDict:
    """truthful_qa/multiple_choice schema: question, mc1_targets{choices,labels}, mc2_targets{choices,labels}."""
    path = truthfulqa_file(data_dir)
    items = read_json(path)
    if not isinstance(items, list):
        raise InputError(path, "expected a JSON list of questions")
    rows = []
    for i, item in enumerate(items, 1):
        where = f"question {i}"
        if not isinstance(item, dict) or not isinstance(item.get("question"), str):
            raise InputError(path, f"{where}: expected an object with a 'question' string")
        row = {"question": item["question"]}
        for key in ("mc1_targets", "mc2_targets"):
            targets = item.get(key)
            if not isinstance(targets, dict) or not targets or not any(v == 1 for v in targets.values()):
                raise InputError(path, f"{where}: '{key}' must map answers to 0/1 with at least one 1")
            row[key] = {"choices": list(targets), "labels": [int(v) for v in targets.values()]}
        rows.append(row)
    return datasets.DatasetDict({"validation": datasets.Dataset.from_list(rows)})
