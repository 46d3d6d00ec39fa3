import json
from pathlib import Path

import pandas as pd
import pytest

from firefly_core.errors import FireflyError, InputError
from firefly_eval.answers import load_answers
from firefly_eval.cli import main
from firefly_eval.eval_set import SEED_KINDS, TASKS, content_hash, load_set, task_name, validate_set

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


def test_seed_objective_tasks_without_reference_are_objective(tmp_path):
    """The seed's own xlsx has no reference column: its annotators judged correctness themselves."""
    path = tmp_path / "seed.xlsx"
    seed_frame().drop(columns=["output"]).to_excel(path, index=False)
    s = load_set(path)
    objective = {it.task for it in s.items if it.objective}
    assert objective == {"classification", "closed_qa", "extraction", "math", "reading_comprehension"}
    assert sum(it.objective for it in s.items) == 50 and all(it.reference is None for it in s.items)
    assert validate_set(s) == []


@pytest.mark.parametrize("kind, task", [
    ("closed\u00a0qa", "closed_qa"), ("Closed  QA", "closed_qa"), ("close qa", "closed_qa"), ("closed_qa", "closed_qa"),
    ("ＭＲＣ", "reading_comprehension"), (" Open-QA ", "open_qa"), ("EXTRACT", "extraction"), ("Poetry Writing", "poetry_writing"),
])
def test_kind_names_normalised_before_mapping(kind, task):
    assert task_name(kind) == task


def test_json_array_in_belle_columns_and_ours(tmp_path):
    belle = [{"question": "把“你好”翻译成英文。", "class": "translation", "std_answer": "Hello"},
             {"question": "北京是哪个国家的首都？", "class": "closed\u00a0qa", "std_answer": "中国"},
             {"question": "写一首诗。", "class": "generation", "std_answer": ""}]
    path = tmp_path / "belle.json"
    path.write_text(json.dumps(belle, ensure_ascii=False, indent=2), encoding="utf-8")
    s = load_set(path)
    assert [(it.id, it.task, it.objective, it.reference) for it in s.items] == [
        ("translation-01", "translation", False, "Hello"), ("closed_qa-01", "closed_qa", True, "中国"),
        ("generation-01", "generation", False, None)]
    ours = tmp_path / "ours.json"
    ours.write_text(json.dumps([item(1), item(2)], ensure_ascii=False, indent=1), encoding="utf-8")
    assert load_set(ours).hash == content_hash(load_set(ours).items) and len(load_set(ours)) == 2
    tiny_as_array = tmp_path / "tiny.json"
    tiny_as_array.write_text("[\n" + ",\n".join(TINY.read_text(encoding="utf-8").splitlines()) + "\n]\n", encoding="utf-8")
    assert load_set(tiny_as_array).hash == load_set(TINY).hash  # same items, same hash, whatever the form


@pytest.mark.parametrize("name", ["tiny.json", "tiny.jsonl"])
def test_a_byte_order_mark_is_not_part_of_the_set(tmp_path, name):
    """Windows editors save UTF-8 with a byte-order mark: the set loads as without it (JSON array or JSONL)."""
    lines = TINY.read_text(encoding="utf-8").splitlines()
    text = "[\n" + ",\n".join(lines) + "\n]\n" if name.endswith(".json") else "\n".join(lines) + "\n"
    path = tmp_path / name
    path.write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
    assert load_set(path).hash == load_set(TINY).hash


@pytest.mark.parametrize("text, line, message", [
    ('[\n  {"id": "a", "task": "m", "prompt": "x", "objective": false},\n  {"id": "b", "task": "m"\n]', 4,
     "invalid JSON: Expecting ',' delimiter"),  # where the parser stops: the ']' on line 4
    ('[\n  {"id": "a", "task": "m", "prompt": "x", "objective": false},\n  {"id": "b", "task": "m", "objective": false}\n]',
     3, "field 'prompt': missing field"),
    ('[\n  {"id": "a", "task": "m", "prompt": "x", "objective": false},\n  {"id": "a", "task": "m", "prompt": "y", "objective": false}\n]',
     3, "field 'id': duplicate id 'a' (first at line 2)"),
    ('{"id": "a"}', 1, "expected a JSON array"),
    ('[\n  {"question": "x", "class": "math"},\n  [1, 2]\n]', 3, "expected a JSON object"),
])
def test_json_array_errors_name_file_and_line(tmp_path, text, line, message):
    path = tmp_path / "bad.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(InputError) as e:
        load_set(path)
    assert str(e.value).startswith(f"{path}:{line}: ") and message in str(e.value), str(e.value)


def test_duplicate_id_in_xlsx_names_its_row(tmp_path):
    path = tmp_path / "dup.xlsx"
    pd.DataFrame({"id": ["q1", "q2", "q1"], "kind": ["math"] * 3, "instruction": ["1+1", "2+2", "3+3"]}).to_excel(path, index=False)
    with pytest.raises(InputError, match=r"dup.xlsx:4: field 'id': duplicate id 'q1' \(first at row 2\)"):
        load_set(path)


def _damaged_xlsx(tmp_path, how: str) -> Path:
    good = tmp_path / "good.xlsx"
    seed_frame().to_excel(good, index=False)
    data = bytearray(good.read_bytes())
    path = tmp_path / f"{how}.xlsx"
    if how == "truncated":
        data = data[: len(data) // 2]
    elif how == "crc":  # flip bytes inside the first compressed member: the zip reader's CRC check fails
        import zipfile

        with zipfile.ZipFile(good) as z:
            info = max(z.infolist(), key=lambda i: i.compress_size)
        start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
        for k in range(start + 10, start + 40):
            data[k] ^= 0x01
    elif how == "csv-named-xlsx":
        data = bytearray(b"kind,instruction\nmath,1+1\n")
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize("how, needle", [
    ("truncated", "damaged .xlsx file"), ("crc", "damaged .xlsx file"), ("csv-named-xlsx", "not an .xlsx workbook"),
])
def test_damaged_xlsx_is_one_line_exit_2(tmp_path, capsys, how, needle):
    path = _damaged_xlsx(tmp_path, how)
    assert main(["validate-set", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"firefly-eval validate-set: error: {path}: ") and needle in err[0], err
    assert "engine" not in err[0]


def test_validate_set_prints_the_full_hash_and_exports_only_when_clean(tmp_path, capsys):
    out = tmp_path / "out.jsonl"
    assert main(["validate-set", str(TINY), "--export", str(out)]) == 2  # problems: 3 tasks, not 13
    assert not out.exists()
    captured = capsys.readouterr()
    assert f"sha256 {load_set(TINY).hash}\n" in captured.out
    assert f"{out} not written" in captured.err and len(captured.err.strip().splitlines()) == 1
    assert main(["validate-set", str(TINY), "--per-task", "2", "--tasks", "3", "--export", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"cannot write {tmp_path}: Is a directory" in err[0]
    assert main(["validate-set", str(TINY), "--per-task", "2", "--tasks", "3", "--export", str(out)]) == 0
    assert load_set(out).hash == load_set(TINY).hash
