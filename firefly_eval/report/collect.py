"""Read the result files a report is built from (schemas in `firefly_core.schemas`, docs/CONTRACTS.md).

Every file is checked against its kind's schema, then for what a schema cannot say (a tally's counts add up,
benchmark names are the registry's, bits per character compare only on one text); anything wrong raises an
`InputError` naming the file (and line and field), so a report never shows a number it guessed.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from firefly_core.errors import FireflyError, InputError
from firefly_core.io import iter_jsonl, read_json
from firefly_core.schemas import validate
from firefly_eval.answers import Answers, read_answers
from firefly_eval.benchmarks import CMMLU_CATEGORIES, LEADERBOARD_TASKS


def _finite(value, path, where: str, line=None) -> None:
    """A number the report computes with: a training loss (NaN in a diverged run's files), a published score."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InputError(path, f"expected a finite number, got {value!r}", line=line, field=where)


def split_label(spec: str) -> tuple[str | None, Path]:
    """`LABEL=PATH` or `PATH` (a path containing '=' must be given with a label)."""
    if "=" in spec and not Path(spec).exists():
        label, path = spec.split("=", 1)
        if not label:
            raise FireflyError(f"'{spec}': empty label before '='")
        return label, Path(path)
    return None, Path(spec)


@dataclass
class TrainRun:
    name: str
    path: Path
    info: dict
    config_text: str
    config: dict
    loss: list[dict]  # loss.jsonl rows: step, loss (+ lr, tokens, ... when present)


def read_run(spec: str) -> TrainRun:
    label, path = split_label(spec)
    if not path.is_dir():
        raise InputError(path, "training run folder not found")
    info_path = path / "run_info.json"
    info = validate("train_run", read_json(info_path), info_path)
    if info.get("final_loss") is not None:
        _finite(info["final_loss"], info_path, "final_loss")
    cfg_path = path / "config.yaml"
    if not cfg_path.is_file():
        raise InputError(cfg_path, "file not found (every run folder keeps its resolved config)")
    config_text = cfg_path.read_text(encoding="utf-8")
    try:
        config = yaml.safe_load(config_text) or {}
    except yaml.YAMLError as e:
        raise InputError(cfg_path, f"invalid YAML: {getattr(e, 'problem', e)}") from None
    if not isinstance(config, dict):
        raise InputError(cfg_path, "expected a mapping at the top level")
    loss_path = path / "loss.jsonl"
    rows = []
    for lineno, row in iter_jsonl(loss_path):
        _finite(validate("loss_line", row, loss_path, lineno)["loss"], loss_path, "loss", lineno)
        rows.append(row)
    return TrainRun(name=label or path.name, path=path, info=info, config_text=config_text, config=config, loss=rows)


@dataclass
class BenchResult:
    label: str
    path: Path
    data: dict


def _bench(spec: str, kind: str) -> BenchResult:
    """A benchmark result of `kind`, labelled as given (`LABEL=PATH`) or by its model's `--ckpt`."""
    label, path = split_label(spec)
    obj = validate(kind, read_json(path), path)
    if not label and "ckpt" not in obj["model"]:
        raise InputError(path, "missing model name: give it as LABEL=PATH", field="model.ckpt")
    return BenchResult(label or obj["model"]["ckpt"], path, obj)


def _known(result: BenchResult, block: str, known: list[str], what: str) -> BenchResult:
    for name in result.data[block]:
        if name not in known:
            raise InputError(result.path, f"unknown {what} (known: {', '.join(known)})", field=f"{block}.{name}")
    return result


def read_cmmlu(spec: str) -> BenchResult:
    return _known(_bench(spec, "cmmlu"), "categories", CMMLU_CATEGORIES, "category")


def read_leaderboard(spec: str) -> BenchResult:
    return _known(_bench(spec, "leaderboard"), "tasks", LEADERBOARD_TASKS, "task")


def read_bpc(spec: str) -> BenchResult:
    """A `firefly-eval bits-per-char` result; results that share a label are runs of one model with other seeds."""
    return _bench(spec, "bits_per_char")


def read_vocab_stats(path: str | Path) -> dict:
    """A `firefly-train vocab stats` result: every count block has a number for every tokenizer."""
    path = Path(path)
    obj = validate("vocab_stats", read_json(path), path)
    blocks = [(f"files[{i}].tokens", f["tokens"]) for i, f in enumerate(obj["files"])]
    blocks += [(f"total.{key}", obj["total"][key]) for key in ("tokens", "tokens_per_char", "reduction_vs_first")]
    for where, counts in blocks:
        for t in obj["tokenizers"]:
            if t["name"] not in counts:
                raise InputError(path, "missing field (one for every tokenizer)", field=f"{where}.{t['name']}")
    return obj


def _pct_scale(pair: dict, path, i: int) -> float:
    """The tally's *_pct fields: fractions or percentages; check they match the counts, return the scale."""
    n = pair["n"]
    for scale in (1.0, 100.0):
        if all(abs(pair[f"{k}_pct"] - scale * pair[k] / n) < 1e-3 * scale for k in ("win", "tie", "loss")):
            return scale
    raise InputError(path, "win_pct/tie_pct/loss_pct do not match win/tie/loss over n", field=f"pairs[{i}]")


def read_tally(path: str | Path) -> dict:
    """A `firefly-eval tally` result: each pair's counts add up, and its percentages match them."""
    path = Path(path)
    obj = validate("tally", read_json(path), path)
    for i, p in enumerate(obj["pairs"]):
        if p["win"] + p["tie"] + p["loss"] != p["n"] or p["n"] <= 0:
            raise InputError(path, "win + tie + loss must equal n (> 0)", field=f"pairs[{i}].n")
        p["_pct_scale"] = _pct_scale(p, path, i)
    return obj


@dataclass
class Reference:
    model: str
    source: str
    cmmlu: dict = field(default_factory=dict)  # category or "average" -> acc
    leaderboard: dict = field(default_factory=dict)  # task or "average" -> acc


def read_references(path: str | Path) -> list[Reference]:
    """refs.yaml: a list of {model, source, cmmlu: {category|average: acc}, leaderboard: {task|average: acc}}."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        raise InputError(path, f"invalid YAML: {getattr(e, 'problem', e)}", line=mark.line + 1 if mark else None) from None
    if not isinstance(data, list):
        raise InputError(path, "expected a list of reference entries")
    refs = []
    allowed = {"cmmlu": CMMLU_CATEGORIES + ["average"], "leaderboard": LEADERBOARD_TASKS + ["average"]}
    for i, e in enumerate(data):
        if not isinstance(e, dict):
            raise InputError(path, "expected a mapping", field=f"[{i}]")
        unknown = set(e) - {"model", "source", "cmmlu", "leaderboard"}
        if unknown:
            raise InputError(path, "unknown key (known: model, source, cmmlu, leaderboard)", field=f"[{i}].{sorted(unknown)[0]}")
        for key in ("model", "source"):
            if not isinstance(e.get(key), str) or not e[key]:
                raise InputError(path, "required text (where the numbers were published)", field=f"[{i}].{key}")
        scores = {}
        for block, keys in allowed.items():
            values = e.get(block) or {}
            if not isinstance(values, dict):
                raise InputError(path, "expected a mapping", field=f"[{i}].{block}")
            for k in values:
                if k not in keys:
                    raise InputError(path, f"unknown key (known: {', '.join(keys)})", field=f"[{i}].{block}.{k}")
                _finite(values[k], path, f"[{i}].{block}.{k}")
            scores[block] = values
        refs.append(Reference(e["model"], e["source"], scores["cmmlu"], scores["leaderboard"]))
    return refs


@dataclass
class Inputs:
    """Everything one report is built from."""

    runs: list[TrainRun] = field(default_factory=list)
    cmmlu: list[BenchResult] = field(default_factory=list)
    leaderboard: list[BenchResult] = field(default_factory=list)
    bpc: list[BenchResult] = field(default_factory=list)
    vocab_stats: dict | None = None
    vocab_stats_path: Path | None = None
    tally: dict | None = None
    tally_path: Path | None = None
    answers: list[Answers] = field(default_factory=list)
    references: list[Reference] = field(default_factory=list)


def collect(runs=(), cmmlu=(), leaderboard=(), vocab_stats=None, tally=None, answers=(), compare=None,
            bpc=()) -> Inputs:
    bpc_results = [read_bpc(s) for s in bpc]
    texts = {r.data["text"]["sha256"] for r in bpc_results}
    if len(texts) > 1:
        raise FireflyError("--bpc results were measured on different texts ("
                           + ", ".join(sorted({r.data["text"]["path"] for r in bpc_results}))
                           + "): bits per character compare models only on the same text")
    return Inputs(runs=[read_run(s) for s in runs], cmmlu=[read_cmmlu(s) for s in cmmlu],
                  leaderboard=[read_leaderboard(s) for s in leaderboard], bpc=bpc_results,
                  vocab_stats=read_vocab_stats(vocab_stats) if vocab_stats else None,
                  vocab_stats_path=Path(vocab_stats) if vocab_stats else None,
                  tally=read_tally(tally) if tally else None, tally_path=Path(tally) if tally else None,
                  answers=[read_answers(a) for a in answers],
                  references=read_references(compare) if compare else [])
