"""The shipped smoke sets are in the real formats: the real readers accept them, with the counts we wrote."""
import csv
import json
from pathlib import Path

from firefly_eval import cmmlu_data, leaderboard
from firefly_eval.benchmarks import CMMLU_CATEGORIES, LEADERBOARD
from firefly_eval.tasks import utils

MINI = Path(__file__).resolve().parents[2] / "firefly_eval" / "minisets"
SUBJECTS = ["chinese_history", "economics", "elementary_mathematics", "nutrition", "world_history"]


def test_cmmlu_miniset_layout_and_counts():
    assert cmmlu_data.check_data_dir(MINI / "cmmlu") == {s: 8 for s in SUBJECTS}
    for s in SUBJECTS:
        with open(MINI / "cmmlu" / "dev" / f"{s}.csv", encoding="utf-8") as f:
            rows = list(csv.reader(f))
        assert rows[0] == ["", "Question", "A", "B", "C", "D", "Answer"] and len(rows) == 6
        assert [r[0] for r in rows[1:]] == ["0", "1", "2", "3", "4"]


def test_cmmlu_categories_json_has_cmmlu_shape_and_covers_all_five():
    cats = json.loads((MINI / "cmmlu" / "categories.json").read_text(encoding="utf-8"))
    assert set(cats) == {"name_en2zh", "subcategories", "categories"}
    assert sorted(cats["subcategories"]) == SUBJECTS
    assert list(cmmlu_data.category_subjects(MINI / "cmmlu", SUBJECTS)) == CMMLU_CATEGORIES


def test_english_minisets_load_with_expected_sizes():
    d = MINI / "english"
    files = leaderboard.check_data(d, list(LEADERBOARD))
    assert len(files) == 2 * 2 + 2 + 1 + 1
    assert utils.mmlu_subjects(d) == ["elementary_mathematics", "high_school_geography"]
    assert {k: len(v) for k, v in utils.load_mmlu(str(d), "elementary_mathematics").items()} == {"dev": 5, "test": 4}
    assert {k: len(v) for k, v in utils.load_arc(str(d)).items()} == {"train": 28, "test": 6}
    assert {k: len(v) for k, v in utils.load_hellaswag(str(d)).items()} == {"validation": 12}
    tq = utils.load_truthfulqa(str(d))["validation"]
    assert len(tq) == 5 and tq[2]["mc2_targets"]["labels"] == [1, 1, 0, 0] and tq[2]["mc1_targets"]["labels"] == [1, 0, 0, 0]


def test_arc_train_and_test_questions_are_disjoint():
    arc = utils.load_arc(str(MINI / "english"))
    assert not set(arc["train"]["question"]) & set(arc["test"]["question"])
