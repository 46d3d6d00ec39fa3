"""Read and validate the result files a report is built from (formats in docs/CONTRACTS.md).

Every reader checks `format`/`kind` and the fields the report uses, and raises `InputError` naming the
file (and line/field) on anything missing or mistyped, so a report never shows a number it guessed.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from firefly_core.errors import FireflyError, InputError
from firefly_core.io import iter_jsonl, read_json, require
from firefly_eval.benchmarks import CMMLU_CATEGORIES, LEADERBOARD_TASKS

NUM = (int, float)


def _number(obj: dict, key: str, path, line=None, *, optional=False, where: str | None = None):
    name = where or key
    if key not in obj:
        if optional:
            return None
        raise InputError(path, "missing field", line=line, field=name)
    value = obj[key]
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, NUM) or not math.isfinite(value):
        raise InputError(path, f"expected a finite number, got {value!r}", line=line, field=name)
    return value


def _header(obj, path, kind: str) -> dict:
    if not isinstance(obj, dict):
        raise InputError(path, "expected a JSON object at the top level")
    if obj.get("format") != 1:
        raise InputError(path, f"unsupported format {obj.get('format')!r} (this report reads format 1)",
                         field="format")
    if obj.get("kind") != kind:
        raise InputError(path, f"expected kind '{kind}', got {obj.get('kind')!r} (wrong file for this flag?)",
                         field="kind")
    return obj


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
    info = _header(read_json(info_path), info_path, "train_run")
    for key in ("command", "base_model", "mode"):
        require(info, key, str, info_path, None)
    data = require(info, "data", list, info_path, None)
    for i, d in enumerate(data):
        if not isinstance(d, dict) or not isinstance(d.get("path"), str) or not isinstance(d.get("sha256"), str):
            raise InputError(info_path, "expected {path, sha256}", field=f"data[{i}]")
    for key in ("steps", "tokens"):
        require(info, key, int, info_path, None)
    for key in ("train_runtime_s", "final_loss"):
        _number(info, key, info_path, optional=key == "final_loss")
    for key in ("versions", "hardware"):
        require(info, key, dict, info_path, None)
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
        require(row, "step", int, loss_path, lineno)
        _number(row, "loss", loss_path, lineno)
        rows.append(row)
    return TrainRun(name=label or path.name, path=path, info=info, config_text=config_text, config=config, loss=rows)


def _model_label(obj: dict, path, label: str | None) -> str:
    model = require(obj, "model", dict, path, None)
    if label:
        return label
    if not isinstance(model.get("ckpt"), str):
        raise InputError(path, "missing model name: give it as LABEL=PATH", field="model.ckpt")
    return model["ckpt"]


@dataclass
class BenchResult:
    label: str
    path: Path
    data: dict


def read_cmmlu(spec: str) -> BenchResult:
    label, path = split_label(spec)
    obj = _header(read_json(path), path, "cmmlu")
    name = _model_label(obj, path, label)
    subjects = require(obj, "subjects", dict, path, None)
    for s in subjects:
        _number(subjects, s, path, optional=True, where=f"subjects.{s}")
    cats = require(obj, "categories", dict, path, None)
    for c in cats:
        if c not in CMMLU_CATEGORIES:
            raise InputError(path, f"unknown category (known: {', '.join(CMMLU_CATEGORIES)})", field=f"categories.{c}")
        _number(cats, c, path, optional=True, where=f"categories.{c}")
    _number(obj, "average", path)
    require(obj, "n_questions", int, path, None)
    if obj.get("limit") is not None:
        require(obj, "limit", int, path, None)
    return BenchResult(name, path, obj)


def read_leaderboard(spec: str) -> BenchResult:
    label, path = split_label(spec)
    obj = _header(read_json(path), path, "leaderboard")
    name = _model_label(obj, path, label)
    tasks = require(obj, "tasks", dict, path, None)
    for t, entry in tasks.items():
        if t not in LEADERBOARD_TASKS:
            raise InputError(path, f"unknown task (known: {', '.join(LEADERBOARD_TASKS)})", field=f"tasks.{t}")
        if not isinstance(entry, dict):
            raise InputError(path, "expected an object", field=f"tasks.{t}")
        require(entry, "metric", str, path, None)
        _number(entry, "value", path, where=f"tasks.{t}.value")
        _number(entry, "stderr", path, optional=True, where=f"tasks.{t}.stderr")
        _number(entry, "shots", path, where=f"tasks.{t}.shots")
        _number(entry, "n", path, optional=True, where=f"tasks.{t}.n")
    _number(obj, "average", path)
    if obj.get("limit") is not None:
        require(obj, "limit", int, path, None)
    return BenchResult(name, path, obj)


def read_vocab_stats(path: str | Path) -> dict:
    path = Path(path)
    obj = _header(read_json(path), path, "vocab_stats")
    toks = require(obj, "tokenizers", list, path, None)
    names = []
    for i, t in enumerate(toks):
        if not isinstance(t, dict) or not isinstance(t.get("name"), str):
            raise InputError(path, "expected {name, path, vocab_size}", field=f"tokenizers[{i}]")
        require(t, "vocab_size", int, path, None)
        names.append(t["name"])
    for i, f in enumerate(require(obj, "files", list, path, None)):
        if not isinstance(f, dict):
            raise InputError(path, "expected an object", field=f"files[{i}]")
        require(f, "path", str, path, None)
        require(f, "chars", int, path, None)
        counts = require(f, "tokens", dict, path, None)
        for n in names:
            if not isinstance(counts.get(n), int):
                raise InputError(path, "missing token count", field=f"files[{i}].tokens.{n}")
    total = require(obj, "total", dict, path, None)
    require(total, "chars", int, path, None)
    for key, kind in (("tokens", int), ("tokens_per_char", NUM), ("reduction_vs_first", NUM)):
        block = require(total, key, dict, path, None)
        for n in names:
            if not isinstance(block.get(n), kind) or isinstance(block.get(n), bool):
                raise InputError(path, "missing or not a number", field=f"total.{key}.{n}")
    return obj


def _interval(obj: dict, key: str, path, where: str) -> None:
    """[lo, hi] or null (a statistic that is undefined for the votes at hand)."""
    ci = obj.get(key)
    if ci is not None and not (isinstance(ci, list) and len(ci) == 2
                               and all(isinstance(v, NUM) and not isinstance(v, bool) for v in ci)):
        raise InputError(path, "expected [lo, hi] or null", field=where)


def _pct_scale(pair: dict, path, i: int) -> float:
    """The tally's *_pct fields: fractions or percentages; check they match the counts, return the scale."""
    n = pair["n"]
    for scale in (1.0, 100.0):
        if all(abs(pair[f"{k}_pct"] - scale * pair[k] / n) < 1e-3 * scale for k in ("win", "tie", "loss")):
            return scale
    raise InputError(path, "win_pct/tie_pct/loss_pct do not match win/tie/loss over n", field=f"pairs[{i}]")


def read_tally(path: str | Path) -> dict:
    path = Path(path)
    obj = _header(read_json(path), path, "tally")
    pairs = require(obj, "pairs", list, path, None)
    for i, p in enumerate(pairs):
        where = f"pairs[{i}]"
        if not isinstance(p, dict):
            raise InputError(path, "expected an object", field=where)
        for key in ("model_a", "model_b"):
            if not isinstance(p.get(key), str):
                raise InputError(path, "missing model name", field=f"{where}.{key}")
        for key in ("win", "tie", "loss", "n"):
            if not isinstance(p.get(key), int) or isinstance(p.get(key), bool):
                raise InputError(path, "expected an integer", field=f"{where}.{key}")
        if p["win"] + p["tie"] + p["loss"] != p["n"] or p["n"] <= 0:
            raise InputError(path, "win + tie + loss must equal n (> 0)", field=f"{where}.n")
        for key in ("win_pct", "tie_pct", "loss_pct", "win_rate"):
            _number(p, key, path, where=f"{where}.{key}")
        _number(p, "sign_test_p", path, optional=True, where=f"{where}.sign_test_p")  # null: no decisive votes
        _interval(p, "win_rate_ci", path, f"{where}.win_rate_ci")
        p["_pct_scale"] = _pct_scale(p, path, i)
        for task, c in (p.get("per_task") or {}).items():
            if not (isinstance(c, dict) and all(isinstance(c.get(k), int) for k in ("win", "tie", "loss"))):
                raise InputError(path, "expected {win, tie, loss} integers", field=f"{where}.per_task.{task}")
    bias = obj.get("position_bias")
    if bias:
        for key in ("left_wins", "right_wins", "ties"):
            _number(bias, key, path, where=f"position_bias.{key}")
        for key in ("left_win_rate", "p"):  # null when no vote chose a side
            _number(bias, key, path, optional=True, where=f"position_bias.{key}")
        _interval(bias, "ci", path, "position_bias.ci")
    for i, m in enumerate(obj.get("bradley_terry") or []):
        if not (isinstance(m, dict) and isinstance(m.get("model"), str) and isinstance(m.get("ci"), list)):
            raise InputError(path, "expected {model, score, ci}", field=f"bradley_terry[{i}]")
        _number(m, "score", path, where=f"bradley_terry[{i}].score")
    return obj


@dataclass
class Answers:
    path: Path
    header: dict
    n: int
    mean_tokens: float | None
    at_cap: int | None  # answers whose token count reached the header's max_new_tokens (cut, not finished)


def read_answers(path: str | Path) -> Answers:
    path = Path(path)
    header, n, tokens = None, 0, []
    for lineno, row in iter_jsonl(path):
        if header is None:
            _header(row, path, "answers_header")
            require(row, "model", str, path, lineno)
            header = row
            continue
        require(row, "id", str, path, lineno)
        require(row, "answer", str, path, lineno)
        if isinstance(row.get("tokens"), int):
            tokens.append(row["tokens"])
        n += 1
    if header is None:
        raise InputError(path, "empty answers file (line 1 must be the answers_header)")
    cap = (header.get("sampling") or {}).get("max_new_tokens") if isinstance(header.get("sampling"), dict) else None
    at_cap = sum(t >= cap for t in tokens) if isinstance(cap, int) and tokens else None
    return Answers(path, header, n, sum(tokens) / len(tokens) if tokens else None, at_cap)


def read_bpc(spec: str) -> BenchResult:
    """A `firefly-eval bits-per-char` result; results that share a label are runs of one model with other seeds."""
    label, path = split_label(spec)
    obj = _header(read_json(path), path, "bits_per_char")
    name = _model_label(obj, path, label)
    text = require(obj, "text", dict, path, None)
    require(text, "path", str, path, None)
    require(text, "sha256", str, path, None)
    for key in ("documents", "chars", "bytes", "tokens"):
        if not isinstance(obj.get(key), int) or isinstance(obj.get(key), bool) or obj[key] <= 0:
            raise InputError(path, "expected a positive integer", field=key)
    for key in ("nll_bits", "bits_per_char", "bits_per_byte", "tokens_per_char"):
        _number(obj, key, path)
    return BenchResult(name, path, obj)


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
                _number(values, k, path, where=f"[{i}].{block}.{k}")
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
