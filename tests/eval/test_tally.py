import json
from pathlib import Path

import pytest
from scipy import stats as sps

from firefly_eval.cli import main
from firefly_eval.eval_set import load_set
from firefly_eval.tally import format_table, outcome_for, tally
from firefly_eval.votes import Vote, VoteStore

TINY = Path(__file__).parent / "fixtures" / "tiny_set.jsonl"


def vote(item, left, right, choice, annotator="x", task="generation", lc=None, rc=None):
    return Vote(annotator, item, task, left, right, choice, lc, rc, "", 0.0)


def test_outcome_for_applies_the_rules():
    v = vote("m1", "b", "a", "left", task="math", lc=False, rc=True)  # annotator liked b, but only a is right
    assert outcome_for(v, "a") == "win" and outcome_for(v, "b") == "loss"
    assert outcome_for(v, "a", objective=False) == "loss"  # a subjective item: the preference stands
    both_wrong = vote("m2", "a", "b", "left", task="math", lc=False, rc=False)
    assert outcome_for(both_wrong, "a") == "tie"
    assert outcome_for(vote("g1", "a", "b", "tie"), "b") == "tie"
    with pytest.raises(ValueError):
        outcome_for(vote("g1", "a", "b", "left"), "c")


def seed_table_votes():
    """The seed's headline shape on 130 items: 86 wins, 40 ties, 4 losses for "firefly" over "llama"."""
    votes, k = [], 0
    for outcome, n in (("win", 86), ("tie", 40), ("loss", 4)):
        for _ in range(n):
            left, right = ("firefly", "llama") if k % 2 else ("llama", "firefly")  # sides alternate
            choice = "tie" if outcome == "tie" else ("left" if (left == "firefly") == (outcome == "win") else "right")
            votes.append(vote(f"i{k:03d}", left, right, choice, task=f"t{k % 13:02d}"))
            k += 1
    return votes


def test_pair_counts_percentages_and_statistics():
    result = tally(seed_table_votes(), set_hash="h", n_resamples=500, seed=0)
    assert result["kind"] == "tally" and result["format"] == 1 and result["set_hash"] == "h"
    [p] = result["pairs"]
    assert (p["model_a"], p["model_b"]) == ("firefly", "llama")
    assert (p["win"], p["tie"], p["loss"], p["n"], p["n_items"]) == (86, 40, 4, 130, 130)
    assert (p["win_pct"], p["tie_pct"], p["loss_pct"]) == (66.15, 30.77, 3.08)
    assert p["win_rate"] == pytest.approx(106 / 130)
    assert p["sign_test_p"] == sps.binomtest(86, 90, 0.5).pvalue
    lo, hi = p["win_rate_ci"]
    assert lo < p["win_rate"] < hi and 0.74 < lo and hi < 0.88
    assert tally(seed_table_votes(), n_resamples=500, seed=0)["pairs"][0]["win_rate_ci"] == [lo, hi]
    assert sum(c["win"] for c in p["per_task"].values()) == 86 and len(p["per_task"]) == 13
    assert p["per_task"]["t00"] == {"win": 7, "tie": 3, "loss": 0}
    assert result["bradley_terry"] is None  # two models only
    table = format_table(result)
    assert "firefly vs llama: win / tie / loss = 86 / 40 / 4 (66.2% / 30.8% / 3.1%)" in table


def test_position_bias_counts_raw_choices():
    votes = [vote("a", "p", "q", "left"), vote("b", "q", "p", "left"), vote("c", "p", "q", "left"),
             vote("d", "q", "p", "right"), vote("e", "p", "q", "tie"),
             vote("f", "p", "q", "left", task="math", lc=False, rc=True)]  # objective: still a left choice
    pb = tally(votes, n_resamples=200)["position_bias"]
    assert (pb["left_wins"], pb["right_wins"], pb["ties"]) == (4, 1, 1)
    assert pb["left_win_rate"] == 0.8 and pb["p"] == sps.binomtest(4, 5).pvalue
    assert pb["ci"][0] < 0.8 < pb["ci"][1]


def test_agreement_two_annotators():
    # a's outcomes on 4 items - x: win win tie loss; y: win tie tie loss (y sees the sides swapped)
    x = [vote("1", "a", "b", "left"), vote("2", "a", "b", "left"), vote("3", "a", "b", "tie"), vote("4", "a", "b", "right")]
    y = [vote("1", "b", "a", "right", "y"), vote("2", "b", "a", "tie", "y"), vote("3", "b", "a", "tie", "y"),
         vote("4", "b", "a", "left", "y")]
    ag = tally(x + y + [vote("5", "a", "b", "left")], n_resamples=200)["agreement"]
    # by hand: p_o = 3/4; marginals x (win .5, tie .25, loss .25), y (.25, .5, .25): p_e = 0.3125 -> 7/11
    assert ag["cohen_kappa"] == pytest.approx(7 / 11)
    # Fleiss: P-bar = 3/4, shares (3/8, 3/8, 2/8): P-e = 22/64 -> 13/21
    assert ag["fleiss_kappa"] == pytest.approx(13 / 21)
    assert ag["n_items_multi"] == 4 and ag["annotators"] == ["x", "y"] and ag["reason"] is None


def test_agreement_three_annotators_and_degenerate_cases():
    votes = [vote(i, "a", "b", c, annotator=n) for i, row in (("1", "lll"), ("2", "llt"), ("3", "rrr"))
             for n, c in zip("xyz", ["left" if ch == "l" else "right" if ch == "r" else "tie" for ch in row])]
    ag = tally(votes, n_resamples=200)["agreement"]
    # units [win, tie, loss]: [3,0,0], [2,1,0], [0,0,3]: P-bar = (1 + 1/3 + 1) / 3 = 7/9;
    # shares (5/9, 1/9, 3/9): P-e = 35/81 -> (7/9 - 35/81) / (46/81) = 28/46
    assert ag["fleiss_kappa"] == pytest.approx(28 / 46) and ag["cohen_kappa"] is None
    assert ag["reason"] == "3 annotators: Cohen's kappa is for two, see Fleiss' kappa"
    single = tally([vote("1", "a", "b", "left")], n_resamples=200)["agreement"]
    assert single == {"cohen_kappa": None, "fleiss_kappa": None, "n_items_multi": 0, "annotators": [],
                      "reason": "no item was judged by more than one annotator"}
    same = tally([vote("1", "a", "b", "tie", "x"), vote("1", "b", "a", "tie", "y")], n_resamples=200)["agreement"]
    assert same["cohen_kappa"] is None and same["fleiss_kappa"] is None and "undefined" in same["reason"]


def test_bradley_terry_with_three_models():
    votes = []
    for k in range(12):
        votes += [vote(f"i{k}", "big", "mid", "left"), vote(f"i{k}", "small", "mid", "right"),
                  vote(f"i{k}", "small", "big", "right" if k < 10 else "left")]
    result = tally(votes, models=["big", "mid", "small"], n_resamples=300, seed=0)
    bt = result["bradley_terry"]
    assert [r["model"] for r in bt] == ["big", "mid", "small"]
    for r in bt:
        assert r["ci"][0] - 1e-9 <= r["score"] <= r["ci"][1] + 1e-9
    assert [(p["model_a"], p["model_b"]) for p in result["pairs"]] == [("big", "mid"), ("big", "small"), ("mid", "small")]
    assert result["pairs"][1]["win"] == 10 and result["pairs"][1]["loss"] == 2


def make_db(path, eval_set, models=("alpha", "beta")):
    store = VoteStore(path, eval_set.id, eval_set.hash, list(models))
    for name in ("ann1", "ann2"):
        store.add_annotator(name)
    prefer = {"ann1": "alpha", "ann2": "alpha"}
    for name in ("ann1", "ann2"):
        for it in eval_set.items:
            left = store.left_model_for(name, it.id, models)
            right = models[1] if left == models[0] else models[0]
            lc = rc = None
            if it.objective:  # beta is right on math, both are right elsewhere
                lc = right == "alpha" if it.task == "math" else True
                rc = not lc if it.task == "math" else True
            choice = "left" if left == prefer[name] else "right"
            store.record_vote(Vote(name, it.id, it.task, left, right, choice, lc, rc, "", 0.0))
    store.close()


def test_tally_cli_on_a_real_database(tmp_path, capsys):
    eval_set = load_set(TINY)
    db = tmp_path / "votes.sqlite"
    make_db(db, eval_set)
    out = tmp_path / "tally.json"
    assert main(["tally", "--db", str(db), "--set", str(TINY), "-o", str(out), "--bootstrap", "200"]) == 0
    result = json.loads(out.read_text(encoding="utf-8"))
    [p] = result["pairs"]
    # 2 annotators x 6 items; alpha preferred everywhere, but the rules decide objective items:
    # math (2 items): beta right -> loss; classification (2): both right -> tie; generation (2): win
    assert (p["win"], p["tie"], p["loss"]) == (4, 4, 4)
    assert p["per_task"] == {"classification": {"win": 0, "tie": 4, "loss": 0},
                             "generation": {"win": 4, "tie": 0, "loss": 0}, "math": {"win": 0, "tie": 0, "loss": 4}}
    assert result["set_hash"] == eval_set.hash and result["agreement"]["fleiss_kappa"] == pytest.approx(1.0)
    assert result["agreement"]["cohen_kappa"] == pytest.approx(1.0)
    assert "alpha vs beta: win / tie / loss = 4 / 4 / 4" in capsys.readouterr().out
    # without --set the recorded correctness flags still mark the objective items
    assert main(["tally", "--db", str(db), "--bootstrap", "200"]) == 0
    assert "4 / 4 / 4" in capsys.readouterr().out


def test_tally_cli_refuses_another_set(tmp_path, capsys):
    eval_set = load_set(TINY)
    db = tmp_path / "votes.sqlite"
    make_db(db, eval_set)
    other = tmp_path / "other.jsonl"
    other.write_text(TINY.read_text(encoding="utf-8").replace("写一首", "写两首"), encoding="utf-8")
    assert main(["tally", "--db", str(db), "--set", str(other)]) == 2
    assert "was made for set tiny_set" in capsys.readouterr().err
    assert main(["tally", "--db", str(tmp_path / "none.sqlite")]) == 2
    assert "none.sqlite: file not found" in capsys.readouterr().err


def test_tally_cli_empty_database(tmp_path, capsys):
    eval_set = load_set(TINY)
    db = tmp_path / "votes.sqlite"
    VoteStore(db, eval_set.id, eval_set.hash, ["alpha", "beta"]).close()
    out = tmp_path / "t.json"
    assert main(["tally", "--db", str(db), "-o", str(out), "--bootstrap", "200"]) == 0
    assert "no votes yet" in capsys.readouterr().out
    assert json.loads(out.read_text(encoding="utf-8"))["pairs"] == []


def test_tally_cli_output_to_a_folder_is_one_line(tmp_path, capsys):
    eval_set = load_set(TINY)
    db = tmp_path / "votes.sqlite"
    make_db(db, eval_set)
    folder = tmp_path / "results"
    folder.mkdir()
    assert main(["tally", "--db", str(db), "-o", str(folder), "--bootstrap", "200"]) == 2
    out, err = capsys.readouterr()
    assert err.strip().splitlines() == [f"firefly-eval tally: error: cannot write {folder}: Is a directory"]
    assert out == "" and list(folder.iterdir()) == []  # nothing else printed, nothing written


def test_wrong_language_votes_counted_as_stored():
    """Open-ended item, the annotator preferred the side in the wrong language: it counts as a loss."""
    english_left = Vote("x", "g1", "generation", "a", "b", "left", None, None, "", 0.0, True, False)
    assert outcome_for(english_left, "a") == "loss" and outcome_for(english_left, "a", objective=False) == "loss"
    both = Vote("x", "g2", "generation", "a", "b", "left", None, None, "", 0.0, True, True)
    assert outcome_for(both, "a") == "win"  # both in the wrong language: the preference stands
    [p] = tally([english_left, both], n_resamples=100)["pairs"]
    assert (p["win"], p["tie"], p["loss"]) == (1, 0, 1)
