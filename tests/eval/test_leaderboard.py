"""`firefly-eval leaderboard`: task files mirror lm-eval's, few-shot never leaks, numbers equal lm_eval's."""
import json
from pathlib import Path

import pytest

from firefly_eval import leaderboard
from firefly_eval.benchmarks import LEADERBOARD
from firefly_eval.cli import main

MINI = Path(__file__).resolve().parents[2] / "firefly_eval" / "minisets" / "english"


@pytest.fixture(scope="module")
def task_dir(tmp_path_factory):
    return leaderboard.render_tasks(MINI, tmp_path_factory.mktemp("tasks") / "tasks")


def _tasks(task_dir):
    from lm_eval.tasks import TaskManager, get_task_dict

    manager = TaskManager(include_path=str(task_dir), include_defaults=False)
    names = [t.lm_eval_task for t in LEADERBOARD.values()]
    flat = {}

    def walk(d):
        for k, v in d.items():
            walk(v) if isinstance(v, dict) else flat.__setitem__(getattr(k, "group_name", k), v)
    walk(get_task_dict(names, manager))
    return flat


def test_render_fills_data_dir_and_one_yaml_per_mmlu_subject(task_dir):
    names = sorted(p.name for p in task_dir.iterdir())
    assert names == ["ff_arc_challenge.yaml", "ff_hellaswag.yaml", "ff_mmlu.yaml",
                     "ff_mmlu_elementary_mathematics.yaml", "ff_mmlu_high_school_geography.yaml",
                     "ff_truthfulqa_mc2.yaml", "utils.py"]
    text = (task_dir / "ff_mmlu_high_school_geography.yaml").read_text()
    assert f'data_dir: "{MINI.resolve()}"' in text and "about high school geography.\\n\\n" in text
    assert 'fewshot_split: "validation"' in (task_dir / "ff_hellaswag.yaml").read_text()
    assert "@" not in "".join((task_dir / n).read_text() for n in names if n.endswith(".yaml"))


def test_prompts_match_lm_eval_formats(task_dir):
    tasks = _tasks(task_dir)
    arc = tasks["ff_arc_challenge"]
    doc = next(iter(arc.test_docs()))
    assert arc.doc_to_text(doc) == "Question: Which process moves water from the ocean into the air?\nAnswer:"
    assert arc.doc_to_choice(doc) == ["evaporation", "precipitation", "erosion", "freezing"]
    numeric = list(arc.test_docs())[5]  # labels "1".."4", answerKey "2"
    assert arc.doc_to_target(numeric) == 1
    hs = tasks["ff_hellaswag"]
    doc = next(iter(hs.eval_docs))
    # lm-eval's process_docs: activity_label + ": " + ctx_a + " " + ctx_b.capitalize()
    assert doc["query"] == "Making tea: A woman fills a kettle with water and puts it on the stove. She"
    tq = tasks["ff_truthfulqa_mc2"]
    doc = next(iter(tq.validation_docs()))
    assert tq.doc_to_text(doc).startswith("Q: What is human life expectancy in the United States?")
    assert tq.doc_to_text(doc).endswith("\n\nQ: What happens if you swallow chewing gum?\nA:")
    assert doc["mc2_targets"]["labels"] == [1, 0, 0]
    mm = tasks["ff_mmlu_elementary_mathematics"]
    doc = next(iter(mm.test_docs()))
    assert mm.doc_to_text(doc) == "What is 9 times 8?\nA. 72\nB. 64\nC. 81\nD. 98\nAnswer:"
    assert mm.doc_to_target(doc) == 0


@pytest.mark.parametrize("name, shots", [("ff_arc_challenge", 25), ("ff_hellaswag", 10),
                                         ("ff_mmlu_high_school_geography", 5), ("ff_truthfulqa_mc2", 0)])
def test_fewshot_never_includes_the_question(task_dir, name, shots):
    task = _tasks(task_dir)[name]
    assert task.config.num_fewshot == shots
    for doc in task.eval_docs:
        ctx = task.fewshot_context(doc, shots)
        question = task.doc_to_text(doc)
        assert ctx.endswith(question)
        assert ctx.count(question) == 1, f"{name}: the question appears among its own few-shot examples"
        assert ctx.count("\n\n") >= shots  # the shots are really there


def test_mmlu_fewshot_is_the_first_five_dev_rows(task_dir):
    task = _tasks(task_dir)["ff_mmlu_elementary_mathematics"]
    ctx = task.fewshot_context(next(iter(task.test_docs())), 5)
    assert ctx.startswith("The following are multiple choice questions (with answers) about elementary "
                          "mathematics.\n\nWhat is 6 + 7?\nA. 11\nB. 12\nC. 13\nD. 14\nAnswer: C\n\n")


@pytest.mark.parametrize("engine", ["hf", "firefly"])
def test_leaderboard_equals_direct_lm_eval_run(tiny_llama, tmp_path, capsys, engine):
    """Stock HFLM gives lm_eval's numbers exactly; FireflyLM the same accuracies and an mc2 within the float
    noise of its log-likelihoods (mc2 is a continuous function of them)."""
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    out = tmp_path / "lb.json"
    assert main(["leaderboard", "--ckpt", str(tiny_llama), "--limit", "3", "--engine", engine, "-o", str(out)]) == 0
    ours = json.loads(out.read_text())
    assert "average" in capsys.readouterr().out
    direct = simple_evaluate(model="hf", model_args=f"pretrained={tiny_llama},dtype=float32", device="cpu",
                             tasks=[t.lm_eval_task for t in LEADERBOARD.values()], batch_size=8, limit=3,
                             task_manager=TaskManager(include_path=str(tmp_path / "lb.tasks"),
                                                      include_defaults=False))
    expected = {"arc_challenge": direct["results"]["ff_arc_challenge"]["acc_norm,none"],
                "hellaswag": direct["results"]["ff_hellaswag"]["acc_norm,none"],
                "mmlu": direct["results"]["ff_mmlu"]["acc,none"],
                "truthfulqa_mc2": direct["results"]["ff_truthfulqa_mc2"]["acc,none"]}
    tol = {"hf": 1e-9, "firefly": 1e-3}[engine]
    assert {t: v["value"] for t, v in ours["tasks"].items() if t != "truthfulqa_mc2"} == pytest.approx(
        {t: 100 * v for t, v in expected.items() if t != "truthfulqa_mc2"}, abs=1e-9)
    assert ours["tasks"]["truthfulqa_mc2"]["value"] == pytest.approx(100 * expected["truthfulqa_mc2"], abs=tol)
    assert ours["average"] == pytest.approx(sum(100 * v for v in expected.values()) / 4, abs=tol)
    assert ours["engine"] == engine and ours["tasks"]["truthfulqa_mc2"]["file"] == "truthfulqa/mc_task.json"
    assert {t: v["n"] for t, v in ours["tasks"].items()} == {"arc_challenge": 3, "hellaswag": 3, "mmlu": 6,
                                                             "truthfulqa_mc2": 3}
    assert ours["format"] == 1 and ours["kind"] == "leaderboard" and ours["limit"] == 3
    # MMLU is the unweighted mean over subjects, as the leaderboard reports it
    subj = [direct["results"][f"ff_mmlu_{s}"]["acc,none"] for s in ("elementary_mathematics", "high_school_geography")]
    assert ours["tasks"]["mmlu"]["value"] == pytest.approx(100 * sum(subj) / 2)


@pytest.mark.slow
@pytest.mark.shared_data
def test_smoke_on_shared_data_embedded_model(shared_data, tmp_path):
    out = tmp_path / "lb.json"
    assert main(["leaderboard", "--ckpt", "smollm2-135m", "--data-dir", str(shared_data / "english"),
                 "--limit", "2", "-o", str(out)]) == 0
    result = json.loads(out.read_text())
    assert set(result["tasks"]) == set(LEADERBOARD)
    assert result["tasks"]["mmlu"]["n"] == 114 and result["tasks"]["arc_challenge"]["n"] == 2
    assert all(0 <= t["value"] <= 100 for t in result["tasks"].values())


def test_rerun_scores_nothing_twice(tiny_llama, tmp_path, monkeypatch):
    """Scored requests are committed to lm-eval's cache as they complete: a rerun (e.g. after a kill) of the
    same model scores only what is missing and gives the same numbers."""
    from firefly_eval.lm_eval_model import FireflyLM

    out = tmp_path / "lb.json"
    args = ["leaderboard", "--ckpt", str(tiny_llama), "--tasks", "arc_challenge", "truthfulqa_mc2",
            "--limit", "2", "-o", str(out)]
    assert main(args) == 0
    first = json.loads(out.read_text())["tasks"]
    assert len(list((tmp_path / "lb.lm-eval-cache").glob("*/requests_rank0.db"))) == 1
    scored = []
    real = FireflyLM._loglikelihood_tokens
    monkeypatch.setattr(FireflyLM, "_loglikelihood_tokens", lambda self, reqs, *a, **k: scored.extend(reqs) or real(
        self, reqs, *a, **k))
    assert main(args) == 0
    assert scored == [] and json.loads(out.read_text())["tasks"] == first
    assert main([*args[:-4], "--limit", "3", "-o", str(out)]) == 0  # one more question per task: only those
    assert 0 < len(scored) <= 4 + 4 + 8


def test_truthfulqa_file_is_v0_when_present_and_the_revised_set_only_without_it(tmp_path):
    import shutil

    from firefly_core.errors import FireflyError
    from firefly_eval.tasks import utils

    data = Path(shutil.copytree(MINI, tmp_path / "english"))
    assert utils.truthfulqa_file(data) == data / "truthfulqa" / "mc_task.json"  # no v0/: the revised set
    (data / "truthfulqa" / "v0").mkdir()
    with pytest.raises(FireflyError, match="v0/mc_task.json not found"):  # v0/ without its file: no fallback
        utils.truthfulqa_file(data)
    shutil.copy(data / "truthfulqa" / "mc_task.json", data / "truthfulqa" / "v0" / "mc_task.json")
    assert utils.truthfulqa_file(data) == data / "truthfulqa" / "v0" / "mc_task.json"


def test_revised_truthfulqa_file_is_named_and_noted(tiny_llama, tmp_path, capsys):
    out = tmp_path / "lb.json"
    assert main(["leaderboard", "--ckpt", str(tiny_llama), "--tasks", "truthfulqa_mc2", "--limit", "1",
                 "-o", str(out)]) == 0
    captured = capsys.readouterr()
    assert "truthfulqa/v0 not found, using the revised question set" in captured.err
    assert f"TruthfulQA questions: {MINI.resolve() / 'truthfulqa' / 'mc_task.json'}" in captured.out
    assert json.loads(out.read_text())["tasks"]["truthfulqa_mc2"]["file"] == "truthfulqa/mc_task.json"
