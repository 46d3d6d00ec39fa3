"""The file schemas (`firefly_core.schemas`): what the writers write fits them, a file that does not is refused
naming the file, line and field, and docs/CONTRACTS.md shows the current field tables.

The training and vocabulary writers check their output on every write (`checked`), so their own tests
(tests/train) also round-trip those kinds; here are the writers that are cheap to run and real files they wrote.
"""
import argparse
import json
import math
import re
from pathlib import Path

import pytest

from firefly_core import schemas
from firefly_core.errors import FireflyError, InputError
from firefly_core.io import iter_jsonl, read_json
from firefly_eval import generate
from firefly_eval.answers import read_answers
from firefly_eval.cli import main
from firefly_eval.eval_set import load_set
from firefly_eval.tally import tally
from firefly_eval.votes import Vote

REPO = Path(__file__).resolve().parents[2]
CONTRACTS = REPO / "docs" / "CONTRACTS.md"
REPORT_FIXTURES = REPO / "tests" / "eval" / "report" / "fixtures"
BENCH = REPO / "bench" / "results" / "h200-2026-11-29"  # written by the real stages on a GPU
TINY = REPO / "tests" / "eval" / "fixtures" / "tiny_set.jsonl"


def test_contracts_md_shows_the_current_schemas():
    text = CONTRACTS.read_text(encoding="utf-8")
    assert schemas.update_contracts(text) == text, "run: python -m firefly_core.schemas docs/CONTRACTS.md"
    assert sorted(re.findall(r"<!-- schema: (\w+) -->", text)) == sorted(schemas.SCHEMAS)


@pytest.mark.parametrize("path", sorted(REPORT_FIXTURES.glob("*.json")) + sorted(BENCH.glob("[!b]*.json")),
                         ids=lambda p: p.name)
def test_result_files_fit_the_schema_of_their_kind(path):
    obj = read_json(path)
    schemas.validate(obj["kind"], obj, path)


@pytest.mark.parametrize("path, kinds", [
    *[(p, ("loss_line",)) for p in [*REPORT_FIXTURES.glob("runs/*/loss.jsonl"), BENCH / "loss_7b.jsonl"]],
    *[(p, ("answers_header", "answer")) for p in REPORT_FIXTURES.glob("answers_*.jsonl")],
    (REPO / "eval_sets" / "zh130.jsonl", ("eval_item",)),
], ids=lambda v: v.name if isinstance(v, Path) else None)
def test_line_files_fit_their_schemas(path, kinds):
    for lineno, obj in iter_jsonl(path):
        schemas.validate(kinds[min(lineno, len(kinds)) - 1], obj, path, lineno)


def test_tally_writer_output_fits():
    votes = [Vote(annotator, f"i{k}", "math" if k % 2 else "generation", left, right, choice,
                  True if k % 2 else None, False if k % 2 else None, "", 0.0)
             for k in range(12) for annotator in ("x", "y")
             for left, right, choice in [("a", "b", "left"), ("b", "c", "tie"), ("c", "a", "right")]]
    result = schemas.checked("tally", tally(votes, set_hash="h", n_resamples=200))
    assert result["bradley_terry"] and result["agreement"]["cohen_kappa"] is not None
    schemas.checked("tally", tally([], n_resamples=200))


def test_answers_and_eval_set_writers_output_fits(tmp_path):
    args = argparse.ArgumentParser()
    generate.add_arguments(args)
    eval_set = load_set(TINY)
    for flags in ([], ["--greedy", "--system", "be brief"]):
        parsed = args.parse_args(["--ckpt", "m", "--set", str(TINY), "-o", "o", *flags])
        header = generate._header(parsed, eval_set, "m")
        out = tmp_path / f"answers{len(flags)}.jsonl"
        assert generate.prepare_output(out, eval_set, header) == set()  # writes the checked header
        assert read_answers(out, eval_set).header == header
    exported = tmp_path / "set.jsonl"
    assert main(["validate-set", str(TINY), "--per-task", "2", "--tasks", "3", "--export", str(exported)]) == 0
    for lineno, obj in iter_jsonl(exported):
        schemas.validate("eval_item", obj, exported, lineno)


def _cmmlu() -> dict:
    return read_json(REPORT_FIXTURES / "cmmlu_base.json")


@pytest.mark.parametrize("kind, change, where, message", [
    ("cmmlu", lambda d: d["subjects"].update(anatomy="high"), "subjects.anatomy",
     "expected a finite number or null, got 'high'"),
    ("cmmlu", lambda d: d.update(average=math.nan), "average", "expected a finite number, got nan"),
    ("cmmlu", lambda d: d.pop("n_questions"), "n_questions", "missing field"),
    ("cmmlu", lambda d: d.update(n_questions=True), "n_questions", "expected int, got True"),
    ("cmmlu", lambda d: d.update(mode="fast"), "mode", "expected one of 'ppl', 'gen', got 'fast'"),
    ("cmmlu", lambda d: d["model"].update(adapter=3), "model.adapter", "expected str or null, got 3"),
    ("cmmlu", lambda d: d.update(format=2), "format", "unsupported format 2"),
    ("cmmlu", lambda d: d.update(format=True), "format", "unsupported format True"),
    ("cmmlu", lambda d: d.update(kind="tally"), "kind",
     "expected kind 'cmmlu', got 'tally' (wrong file for this flag?)"),
    ("leaderboard", lambda d: d["tasks"]["arc_challenge"].update(value="x"), "tasks.arc_challenge.value",
     "expected a finite number"),
    ("tally", lambda d: d["pairs"][1].update(win=1.5), "pairs[1].win", "expected int, got 1.5"),
    ("tally", lambda d: d["pairs"][0].update(win_rate_ci=[0.1]), "pairs[0].win_rate_ci",
     "expected [lo, hi] or null, got list"),
    ("tally", lambda d: d["pairs"][0]["per_task"]["math"].pop("tie"), "pairs[0].per_task.math.tie", "missing field"),
])
def test_a_misfit_names_file_and_field(kind, change, where, message):
    obj = read_json(REPORT_FIXTURES / f"{kind}{'_base' if kind != 'tally' else ''}.json")
    change(obj)
    with pytest.raises(InputError) as e:
        schemas.validate(kind, obj, "r.json")
    assert str(e.value).startswith(f"r.json: field '{where}': {message}") and e.value.field == where


def test_a_misfit_line_names_the_line():
    with pytest.raises(InputError, match=r"^a.jsonl:4: field 'id': expected str, got 3$"):
        schemas.validate("answer", {"id": 3, "answer": "x"}, "a.jsonl", line=4)
    with pytest.raises(InputError, match=r"^a.jsonl:2: expected a JSON object, got list$"):
        schemas.validate("answer", [], "a.jsonl", line=2)


def test_unknown_fields_are_ignored_and_optional_ones_may_be_missing():
    obj = _cmmlu()
    obj["new_in_a_later_version"] = {"anything": [1]}
    del obj["versions"], obj["limit"]
    assert schemas.validate("cmmlu", obj, "r.json") is obj


def test_a_writer_bug_is_a_plain_error():
    with pytest.raises(ValueError, match="'loss_line'.*field 'step': expected int, got '3'") as e:
        schemas.checked("loss_line", {"step": "3", "loss": 2.5})
    assert not isinstance(e.value, FireflyError)
    assert schemas.checked("loss_line", {"step": 3, "loss": math.nan})  # a diverged run's loss is still written


def test_contracts_markdown_flattens_nested_fields():
    md = schemas.contracts_markdown("leaderboard")
    assert "| `tasks.<task>.value` | number | accuracy, percent (0-100) |" in md
    assert "| `model.adapter` | str or null | the LoRA adapter folder; null for a full model |" in md
    assert "| `limit` | int or null, optional |" in md
    assert "| `pairs[].per_task.<task>.win` | int | |" in schemas.contracts_markdown("tally")
    assert json.dumps(schemas.SCHEMAS["cmmlu"].about)  # one line of prose above each table
