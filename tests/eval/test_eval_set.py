import json
from pathlib import Path

import pandas as pd
import pytest

from firefly_eval.cli import main
from firefly_eval.eval_set import SEED_KINDS, TASKS, content_hash, load_answers, load_set, validate_set
from firefly_train.errors import FireflyError, InputError

FIXTURES = Path(__file__).parent / "fixtures"
TINY = FIXTURES / "tiny_set.jsonl"


def write_lines(path, objs):
    path.write_text("".join(json.dumps(o, ensure_ascii=False) + "\n" for o in objs), encoding="utf-8")


def item(i, task="math", **kw):
    return {"id": f"{task}-{i}", "task": task, "prompt": f"第{i}题（{task}）", "objective": False,
            "reference": None, "checker": None, **kw}


def test_load_tiny_set():
    s = load_set(TINY)
    assert len(s) == 6 and s.id == "tiny_set" and s.path == TINY
    assert [it.id for it in s.items][:3] == ["math-01", "math-02", "classification-01"]
    assert s.by_id["math-02"].checker == {"type": "number", "value": 160}
    assert s.by_id["generation-01"].objective is False and s.by_id["generation-01"].reference is None
    assert len(s.hash) == 64 and s.hash == content_hash(s.items)
    assert validate_set(s, expect_per_task=2, expect_tasks=3) == []
    assert validate_set(s) == ["3 tasks, expected 13", "task 'math' has 2 items, expected 10",
                               "task 'classification' has 2 items, expected 10",
                               "task 'generation' has 2 items, expected 10"]


def test_hash_is_content_not_bytes(tmp_path):
    objs = [json.loads(line) for line in TINY.read_text(encoding="utf-8").splitlines()]
    other = tmp_path / "same.jsonl"
    other.write_text("\n\n".join(json.dumps(o, indent=None, sort_keys=True) for o in objs) + "\n", encoding="utf-8")
    assert load_set(other).hash == load_set(TINY).hash
    objs[0]["prompt"] += "？"
    write_lines(other, objs)
    assert load_set(other).hash != load_set(TINY).hash


@pytest.mark.parametrize("bad, line, message", [
    ({"id": "a", "task": "math", "prompt": "x", "objective": "yes"}, 2, "field 'objective': expected bool"),
    ({"id": "a", "task": "math", "objective": False}, 2, "field 'prompt': missing field"),
    ({"id": "a", "task": "math", "prompt": "  ", "objective": False}, 2, "field 'prompt': empty"),
    ({"id": "math-1", "task": "math", "prompt": "x", "objective": False}, 2, "field 'id': duplicate id 'math-1'"),
    ({"id": "a", "task": "m", "prompt": "x", "objective": True, "checker": {"type": "exact"}}, 2,
     "field 'checker.type': unknown checker type 'exact'"),
    ({"id": "a", "task": "m", "prompt": "x", "objective": True, "checker": {"type": "regex", "pattern": "("}}, 2,
     "field 'checker.pattern': invalid regular expression"),
    ({"id": "a", "task": "m", "prompt": "x", "objective": True, "checker": {"type": "number", "value": "7"}}, 2,
     "field 'checker.value': a 'number' checker needs 'value'"),
])
def test_malformed_set_names_file_line_field(tmp_path, bad, line, message):
    path = tmp_path / "bad.jsonl"
    write_lines(path, [item(1), bad])
    with pytest.raises(InputError) as e:
        load_set(path)
    assert e.value.line == line and str(e.value).startswith(f"{path}:{line}: ") and message in str(e.value)


def test_broken_json_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(item(1)) + "\n{\"id\": \n", encoding="utf-8")
    with pytest.raises(InputError, match=r"bad.jsonl:2: invalid JSON"):
        load_set(path)


def test_validate_set_problems(tmp_path):
    objs = [item(i, "math") for i in range(10)] + [item(i, "code") for i in range(9)]
    objs[0]["objective"] = True
    objs[1]["checker"] = {"type": "number", "value": 1}
    objs[2]["prompt"] = objs[3]["prompt"]
    path = tmp_path / "s.jsonl"
    write_lines(path, objs)
    assert validate_set(load_set(path), expect_per_task=10, expect_tasks=2) == [
        "task 'code' has 9 items, expected 10",  # math-0 is objective without a key: the annotator judges it
        "item 'math-1' has a checker but is not marked objective",
        "item 'math-2' has the same prompt as another item",
        "item 'math-3' has the same prompt as another item"]


def seed_frame():
    kinds = list(SEED_KINDS)
    rows = [{"kind": k if n % 2 else k.upper(), "instruction": f" {k} 的第{n}个问题 ", "output": "7" if k == "math" else None}
            for k in kinds for n in range(10)]
    return pd.DataFrame(rows)


@pytest.mark.parametrize("suffix", ["xlsx", "csv", "jsonl"])
def test_import_seed_format(tmp_path, suffix):
    frame = seed_frame()
    path = tmp_path / f"seed.{suffix}"
    if suffix == "xlsx":
        frame.to_excel(path, index=False)
    elif suffix == "csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_json(path, orient="records", lines=True, force_ascii=False)
    s = load_set(path)
    assert len(s) == 130 and validate_set(s) == []
    assert sorted({it.task for it in s.items}) == sorted(TASKS)
    mrc = [it for it in s.items if it.task == "reading_comprehension"]
    assert mrc[0].id == "reading_comprehension-01" and mrc[9].id == "reading_comprehension-10"
    assert mrc[3].prompt == "mrc 的第3个问题"
    math = s.by_id["math-01"]
    assert math.objective is True and math.reference == "7" and math.checker is None
    assert s.by_id["brainstorming-01"].objective is False and s.by_id["brainstorming-01"].reference is None


def test_seed_import_same_hash_across_forms_and_export(tmp_path, capsys):
    frame = seed_frame()
    frame.to_excel(tmp_path / "a.xlsx", index=False)
    frame.to_csv(tmp_path / "a.csv", index=False)
    assert load_set(tmp_path / "a.xlsx").hash == load_set(tmp_path / "a.csv").hash
    out = tmp_path / "ours.jsonl"
    assert main(["validate-set", str(tmp_path / "a.xlsx"), "--export", str(out)]) == 0
    assert load_set(out).hash == load_set(tmp_path / "a.xlsx").hash
    assert "130 items, 13 tasks" in capsys.readouterr().out


def test_seed_other_task_names_and_bad_row(tmp_path):
    path = tmp_path / "other.csv"
    pd.DataFrame({"kind": ["poetry", "poetry", "math"], "instruction": ["写诗", "再写", "1+1=?"]}).to_csv(path, index=False)
    s = load_set(path)
    assert [(it.id, it.task) for it in s.items] == [("poetry-01", "poetry"), ("poetry-02", "poetry"), ("math-01", "math")]
    pd.DataFrame({"kind": ["math", "math"], "instruction": ["1+1=?", None]}).to_csv(path, index=False)
    with pytest.raises(InputError, match=r"other.csv:3: field 'instruction': missing or empty"):
        load_set(path)


def test_validate_set_cli(tmp_path, capsys):
    assert main(["validate-set", str(TINY), "--per-task", "2", "--tasks", "3"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "ok"
    assert main(["validate-set", str(TINY)]) == 2
    captured = capsys.readouterr()
    assert "problem: task 'math' has 2 items, expected 10" in captured.out
    assert "error: 4 problem(s)" in captured.err
    assert main(["validate-set", str(tmp_path / "missing.jsonl")]) == 2
    assert "missing.jsonl: file not found" in capsys.readouterr().err


def answers_file(path, s, ids, set_hash=None, model="m"):
    lines = [{"format": 1, "kind": "answers_header", "model": model, "ckpt": "x", "set": str(s.path),
              "set_hash": set_hash or s.hash, "sampling": {}, "seed": 42}]
    lines += [{"id": i, "answer": f"答案{i}", "seed": n, "tokens": 3} for n, i in enumerate(ids)]
    write_lines(path, lines)


def test_load_answers(tmp_path):
    s = load_set(TINY)
    path = tmp_path / "a.jsonl"
    answers_file(path, s, list(s.by_id), model="smol")
    a = load_answers(path, s)
    assert a.model == "smol" and a.by_id["math-02"] == "答案math-02" and a.seeds["math-02"] == 1
    assert a.header["seed"] == 42


def test_load_answers_errors(tmp_path):
    s = load_set(TINY)
    path = tmp_path / "a.jsonl"
    answers_file(path, s, list(s.by_id)[:3])
    with pytest.raises(FireflyError, match="missing classification-02, generation-01, generation-02 ") as e:
        load_answers(path, s)
    assert "math-01," not in str(e.value)
    answers_file(path, s, list(s.by_id), set_hash="0" * 64)
    with pytest.raises(FireflyError, match="answers a different evaluation set"):
        load_answers(path, s)
    answers_file(path, s, list(s.by_id) + ["nope"])
    with pytest.raises(InputError, match=r"a.jsonl:8: field 'id': id 'nope' is not in set"):
        load_answers(path, s)
    answers_file(path, s, list(s.by_id) + ["math-01"])
    with pytest.raises(InputError, match=r"a.jsonl:8: field 'id': duplicate answer"):
        load_answers(path, s)
    text = path.read_text(encoding="utf-8").splitlines()
    path.write_text("\n".join(text[:3] + ['{"id": "math-02", "answer": 5}'] + text[4:]) + "\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"a.jsonl:4: field 'answer': expected str"):
        load_answers(path, s)
    path.write_text("\n".join(text[1:]) + "\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"a.jsonl:1: field 'kind': first line must be the answers header"):
        load_answers(path, s)
    path.write_text("\n".join(text[:2]) + "\n{\"id\": \"ma", encoding="utf-8")
    with pytest.raises(InputError, match=r"a.jsonl:3: invalid JSON"):
        load_answers(path, s)
