"""Bad input to `cmmlu` and `leaderboard`: one line on stderr naming the problem, exit code 2, no download."""
import shutil
from pathlib import Path

import pytest

from firefly_eval.cli import main

MINI = Path(__file__).resolve().parents[2] / "firefly_eval" / "minisets"


def _fails(capsys, argv) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "error:" in err[0], err
    return err[0]


def _cmmlu_copy(tmp_path) -> Path:
    return Path(shutil.copytree(MINI / "cmmlu", tmp_path / "cmmlu"))


def test_cmmlu_wrong_ckpt(capsys, tmp_path):
    err = _fails(capsys, ["cmmlu", "--ckpt", str(tmp_path / "nope"), "-o", str(tmp_path / "r.json")])
    assert "is not on disk" in err and "nothing is downloaded" in err


def test_leaderboard_wrong_ckpt(capsys, tmp_path):
    err = _fails(capsys, ["leaderboard", "--ckpt", "no-such-model", "-o", str(tmp_path / "r.json")])
    assert "model 'no-such-model' is not on disk" in err


def test_cmmlu_missing_data_dir_names_layout(capsys, tmp_path):
    err = _fails(capsys, ["cmmlu", "--ckpt", "smollm2-135m", "--data-dir", str(tmp_path / "cmmlu")])
    assert "{dev,test}/<subject>.csv with header ',Question,A,B,C,D,Answer'" in err
    assert "nothing is downloaded" in err


def test_cmmlu_unknown_subject(capsys):
    err = _fails(capsys, ["cmmlu", "--ckpt", "smollm2-135m", "--subjects", "astrology"])
    assert "unknown subject 'astrology'" in err and "chinese_history" in err


@pytest.mark.parametrize("bad_line, message", [
    ("3,1 + 1 等于？,1,2,3,4,E\n", "field 'Answer': Answer must be A, B, C or D, got 'E'"),
    ("3,1 + 1 等于？,1,2,3\n", "expected 7 columns (index,Question,A,B,C,D,Answer), got 5"),
])
def test_cmmlu_bad_row_names_file_and_line(capsys, tmp_path, bad_line, message):
    data = _cmmlu_copy(tmp_path)
    path = data / "test" / "economics.csv"
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    lines[4] = bad_line  # the 5th line of the file
    path.write_text("".join(lines), encoding="utf-8")
    err = _fails(capsys, ["cmmlu", "--ckpt", "smollm2-135m", "--data-dir", str(data)])
    assert f"{path}:5: {message}" in err


def test_cmmlu_bad_header(capsys, tmp_path):
    data = _cmmlu_copy(tmp_path)
    path = data / "dev" / "nutrition.csv"
    path.write_text("Question,A,B,C,D,Answer\n" + path.read_text(encoding="utf-8").split("\n", 1)[1], encoding="utf-8")
    err = _fails(capsys, ["cmmlu", "--ckpt", "smollm2-135m", "--data-dir", str(data), "--subjects", "nutrition"])
    assert f"{path}:1: bad header" in err


def test_cmmlu_subject_without_dev(capsys, tmp_path):
    data = _cmmlu_copy(tmp_path)
    (data / "dev" / "economics.csv").unlink()
    err = _fails(capsys, ["cmmlu", "--ckpt", "smollm2-135m", "--data-dir", str(data)])
    assert f"{data / 'dev' / 'economics.csv'}: missing" in err


def test_leaderboard_unknown_task(capsys):
    err = _fails(capsys, ["leaderboard", "--ckpt", "smollm2-135m", "--tasks", "arc_challenge", "gsm8k"])
    assert "unknown task 'gsm8k': choose from arc_challenge, hellaswag, mmlu, truthfulqa_mc2" in err


def test_leaderboard_missing_data_dir(capsys, tmp_path):
    err = _fails(capsys, ["leaderboard", "--ckpt", "smollm2-135m", "--data-dir", str(tmp_path / "none"),
                          "--tasks", "arc_challenge"])
    assert "<data-dir>/arc_challenge/ARC-Challenge-{Train,Test}.jsonl" in err


def test_leaderboard_missing_task_file(capsys, tmp_path):
    data = Path(shutil.copytree(MINI / "english", tmp_path / "english"))
    (data / "truthfulqa" / "mc_task.json").unlink()
    err = _fails(capsys, ["leaderboard", "--ckpt", "smollm2-135m", "--data-dir", str(data)])
    assert "truthfulqa/v0/mc_task.json or truthfulqa/mc_task.json" in err


def test_leaderboard_bad_mmlu_row(capsys, tmp_path):
    data = Path(shutil.copytree(MINI / "english", tmp_path / "english"))
    path = data / "mmlu" / "test" / "high_school_geography_test.csv"
    with open(path, "a", encoding="utf-8") as f:
        f.write("Which is a desert?,Gobi,Amazon,Thames,Alps,Z\n")
    err = _fails(capsys, ["leaderboard", "--ckpt", "smollm2-135m", "--data-dir", str(data), "--tasks", "mmlu"])
    assert f"{path}:5: answer must be A, B, C or D, got 'Z'" in err


def test_leaderboard_bad_arc_line(capsys, tmp_path):
    data = Path(shutil.copytree(MINI / "english", tmp_path / "english"))
    path = data / "arc_challenge" / "ARC-Challenge-Test.jsonl"
    with open(path, "a", encoding="utf-8") as f:
        f.write('{"id": "x", "question": {"stem": "Q?", "choices": [{"text": "a", "label": "A"}]}, "answerKey": "B"}\n')
    err = _fails(capsys, ["leaderboard", "--ckpt", "smollm2-135m", "--data-dir", str(data),
                          "--tasks", "arc_challenge"])
    assert f"{path}:7: answerKey 'B' is not one of the choice labels ['A']" in err
