"""`firefly-eval cmmlu`: OpenCompass config, categories, failure detection, numbers equal its summary."""
import csv
import json
import shutil
from pathlib import Path

import pytest

from firefly_core.errors import FireflyError
from firefly_eval import cmmlu, cmmlu_data
from firefly_eval.cli import main

MINI = Path(__file__).resolve().parents[2] / "firefly_eval" / "minisets" / "cmmlu"


def test_dataset_configs_point_at_the_folder_with_limit():
    ds = cmmlu.dataset_configs(MINI, ["economics", "nutrition"], "ppl", 3)
    assert [d["abbr"] for d in ds] == ["cmmlu-economics", "cmmlu-nutrition"]
    assert all(d["path"] == str(MINI) and d["reader_cfg"]["test_range"] == "[0:3]" for d in ds)
    assert ds[0]["infer_cfg"]["retriever"]["fix_id_list"] == [0, 1, 2, 3, 4]  # 5-shot from dev
    assert ds[0]["infer_cfg"]["inferencer"]["type"].__name__ == "PPLInferencer"
    gen = cmmlu.dataset_configs(MINI, ["economics"], "gen", None)[0]
    assert gen["infer_cfg"]["inferencer"]["type"].__name__ == "GenInferencer" and "test_range" not in gen["reader_cfg"]


def test_opencompass_loads_the_miniset_with_its_own_dataset_class():
    from opencompass.datasets import CMMLUDataset

    ds = CMMLUDataset.load(path=str(MINI), name="chinese_history")
    assert (len(ds["dev"]), len(ds["test"])) == (5, 8)
    assert ds["test"][0] == {"question": "中国历史上第一个统一的中央集权王朝是", "A": "夏朝", "B": "商朝",
                             "C": "秦朝", "D": "汉朝", "answer": "C"}


def test_summary_groups_follow_cmmlu_categories():
    groups = {g["name"]: g["subsets"] for g in cmmlu.summary_groups(MINI, sorted(cmmlu_data.check_data_dir(MINI)))}
    assert groups == {
        "cmmlu-stem": ["cmmlu-elementary_mathematics"],
        "cmmlu-humanities": ["cmmlu-chinese_history", "cmmlu-world_history"],
        "cmmlu-social-science": ["cmmlu-economics"],
        "cmmlu-other": ["cmmlu-nutrition"],
        "cmmlu-china-specific": ["cmmlu-chinese_history"],
        "cmmlu": ["cmmlu-chinese_history", "cmmlu-economics", "cmmlu-elementary_mathematics",
                  "cmmlu-nutrition", "cmmlu-world_history"],
    }


def test_categories_fall_back_to_opencompass_table(tmp_path):
    data = Path(shutil.copytree(MINI, tmp_path / "cmmlu"))
    (data / "categories.json").unlink()
    cats = cmmlu_data.category_subjects(data, ["chinese_history", "economics", "ancient_chinese"])
    assert cats == {"Humanities": ["chinese_history"], "Social Science": ["economics", "ancient_chinese"],
                    "China specific": ["chinese_history", "ancient_chinese"]}


def test_missing_predictions_are_an_error(tmp_path):
    (tmp_path / "predictions" / "firefly").mkdir(parents=True)
    (tmp_path / "predictions" / "firefly" / "cmmlu-economics.json").write_text("{}")
    with pytest.raises(FireflyError, match="predictions for cmmlu-economics are empty"):
        cmmlu._check_outputs(tmp_path, ["economics"])
    with pytest.raises(FireflyError, match="OpenCompass wrote no predictions for cmmlu-nutrition"):
        cmmlu._check_outputs(tmp_path, ["nutrition"])


def test_failed_inference_is_one_line_naming_its_traceback(tmp_path, capsys):
    broken = tmp_path / "broken_model"
    broken.mkdir()
    (broken / "config.json").write_text('{"model_type": "llama"}')  # resolves, but has no weights
    rc = main(["cmmlu", "--ckpt", str(broken), "--subjects", "economics", "--limit", "1",
               "-o", str(tmp_path / "r.json")])
    assert rc == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "OpenCompass infer task failed" in err and "logs/infer/error.txt" in err
    assert not (tmp_path / "r.json").exists()


def _summary(path):
    with open(path, encoding="utf-8") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["dataset", "version", "metric", "mode", "firefly"]
    return {r[0]: r[4] for r in rows[1:]}


@pytest.mark.slow  # ~80 s: two runs of two OpenCompass subprocesses
def test_cmmlu_json_carries_opencompass_summary_numbers(tiny_llama, tmp_path, capsys):
    out = tmp_path / "cmmlu.json"
    assert main(["cmmlu", "--ckpt", str(tiny_llama), "--subjects", "economics", "chinese_history",
                 "--limit", "3", "-o", str(out)]) == 0
    result = json.loads(out.read_text())
    summary = _summary(result["opencompass_summary"])
    assert set(summary) == {"cmmlu-economics", "cmmlu-chinese_history", "cmmlu-humanities",
                            "cmmlu-social-science", "cmmlu-china-specific", "cmmlu"}
    assert result["subjects"] == {s: float(summary[f"cmmlu-{s}"]) for s in ("economics", "chinese_history")}
    assert result["categories"] == {"STEM": None, "Humanities": float(summary["cmmlu-humanities"]),
                                    "Social Science": float(summary["cmmlu-social-science"]), "Other": None,
                                    "China specific": float(summary["cmmlu-china-specific"])}
    assert result["average"] == float(summary["cmmlu"])
    # and those are OpenCompass's per-subject accuracies on 3 questions each
    work = Path(result["opencompass_summary"]).parents[1]
    for s in ("economics", "chinese_history"):
        acc = json.loads((work / "results" / "firefly" / f"cmmlu-{s}.json").read_text())["accuracy"]
        assert round(acc, 2) == result["subjects"][s] and acc * 3 / 100 == pytest.approx(round(acc * 3 / 100))
        preds = json.loads((work / "predictions" / "firefly" / f"cmmlu-{s}.json").read_text())
        assert len(preds) == 3
    assert (result["format"], result["kind"], result["mode"], result["shots"]) == (1, "cmmlu", "ppl", 5)
    assert result["n_questions"] == 6 and result["limit"] == 3
    assert result["model"]["base"] == str(tiny_llama)
    assert "average" in capsys.readouterr().out
    # a rerun of the same model, data and settings (as after a kill) predicts only what is missing
    preds = work / "predictions" / "firefly"
    kept = (preds / "cmmlu-chinese_history.json").stat().st_mtime_ns
    (preds / "cmmlu-economics.json").unlink()
    assert main(["cmmlu", "--ckpt", str(tiny_llama), "--subjects", "economics", "chinese_history",
                 "--limit", "3", "-o", str(out)]) == 0
    assert "1 of 2 subjects already predicted" in capsys.readouterr().err
    assert (preds / "cmmlu-chinese_history.json").stat().st_mtime_ns == kept
    assert json.loads(out.read_text())["subjects"] == result["subjects"]


@pytest.mark.slow
@pytest.mark.shared_data
def test_smoke_on_shared_data_embedded_model(shared_data, tmp_path):
    out = tmp_path / "cmmlu.json"
    subjects = ["agronomy", "chinese_history", "college_mathematics", "marketing", "philosophy"]
    assert main(["cmmlu", "--ckpt", "smollm2-135m", "--data-dir", str(shared_data / "cmmlu"),
                 "--subjects", *subjects, "--limit", "4", "-o", str(out)]) == 0
    result = json.loads(out.read_text())
    assert list(result["subjects"]) == subjects and result["n_questions"] == 20
    assert result["categories"]["Other"] == result["subjects"]["agronomy"]
    assert result["average"] == float(_summary(result["opencompass_summary"])["cmmlu"])
