"""Judging: queues, sides, resume, skip, objective items, what a view may contain, the admin tally."""
import dataclasses

import pytest

from firefly_train.errors import FireflyError
from human_eval_app.session import Judging

MODELS = ("model-base-7f3", "model-tuned-9c1")  # as in conftest.py


@pytest.fixture
def judging(judge_files):
    set_path, answers, db = judge_files
    j = Judging.open(set_path, answers, db)
    yield j
    j.store.close()


def test_sign_in(judging):
    token = judging.store.add_annotator("alice")
    admin = judging.store.add_annotator("root", admin=True)
    assert judging.sign_in(token).name == "alice" and not judging.sign_in(token).is_admin
    assert judging.sign_in(admin).is_admin
    assert judging.sign_in("nope") is None and judging.sign_in("") is None


def test_queue_per_annotator_fixed_and_complete(judging):
    qa, qb = judging.queue("alice"), judging.queue("bob")
    assert sorted(qa) == sorted(qb) == [(f"item-{k:03d}", 0) for k in range(12)]
    assert qa != qb
    assert Judging(judging.set, list(judging.answers.values()), judging.store).queue("alice") == qa


def test_view_hides_model_names_and_maps_sides(judging):
    task = judging.next_task("alice")
    view = judging.view("alice", task)
    text = repr(dataclasses.asdict(view))
    assert not any(m in text for m in MODELS)
    assert view.handle == f"{task.item.id}#0" and view.progress == "0 / 12"
    assert view.answer_a == judging.answers[task.left_model].by_id[task.item.id]
    assert view.answer_b == judging.answers[task.right_model].by_id[task.item.id]
    assert task.left_model == judging.store.left_model_for("alice", task.item.id, MODELS)


def test_vote_resume_and_idempotent(judging):
    judging.store.add_annotator("alice")
    first = judging.next_task("alice")
    v = judging.vote("alice", first.handle, "A", True, False, comment="  好  ")
    assert (v.choice, v.left_model, v.comment) == ("left", first.left_model, "好")
    judging.vote("alice", first.handle, "A", True, False, comment="好")  # re-sent: same row
    assert judging.progress("alice") == (1, 12)
    # a fresh Judging on the same database (a server restart) resumes at the next item
    again = Judging(judging.set, list(judging.answers.values()), judging.store)
    second = again.next_task("alice")
    assert second.handle == judging.queue("alice")[1][0] + "#0"
    again.vote("alice", second.handle, "B", True, True)
    again.vote("alice", first.handle, "tie", True, False)  # changing an earlier vote replaces it
    assert [(x.item_id, x.choice) for x in judging.store.votes_of("alice")] == [
        (second.item.id, "right"), (first.item.id, "tie")]


def test_skip_comes_back_last(judging):
    judging.store.add_annotator("alice")
    queue = [f"{i}#{p}" for i, p in judging.queue("alice")]
    judging.skip("alice", queue[0])
    assert judging.next_task("alice").handle == queue[1]
    for h in queue[1:]:
        judging.vote("alice", h, "tie", True, True)
    assert judging.next_task("alice").handle == queue[0]
    judging.vote("alice", queue[0], "tie", False, False)
    assert judging.next_task("alice") is None and judging.progress("alice") == (12, 12)


def test_objective_items_prefilled_and_required(judging):
    judging.store.add_annotator("alice")
    task = judging.task("alice", "item-003#0")  # 3 + 3 = 6; the tuned model answers 6, the base 7
    view = judging.view("alice", task)
    assert view.objective and view.reference == "6"
    tuned_left = task.left_model == MODELS[1]
    assert (view.a_correct, view.b_correct) == ((True, False) if tuned_left else (False, True))
    with pytest.raises(FireflyError, match="mark whether A and B are correct"):
        judging.vote("alice", "item-003#0", "A")
    vote = judging.vote("alice", "item-003#0", "A", view.a_correct, view.b_correct)
    # the annotator preferred A, but correctness decides
    assert judging.outcome_text(vote) == ("counted as A wins" if tuned_left else
                                          "counted as B wins (objective item: correctness decides)")
    open_view = judging.view("alice", judging.task("alice", "item-002#0"))
    assert (open_view.objective, open_view.a_correct, open_view.b_correct) == (False, None, None)
    assert judging.vote("alice", "item-002#0", "B", True, False).left_correct is None


def test_wrong_language_flagged(judge_files, tmp_path):
    set_path, answers, db = judge_files
    lines = answers[0].read_text(encoding="utf-8").splitlines()
    lines[4] = lines[4].replace("答案是 7。", "The answer is seven, I think so.")  # item-003
    answers[0].write_text("\n".join(lines) + "\n", encoding="utf-8")
    j = Judging.open(set_path, answers, db)
    task = j.task("alice", "item-003#0")
    view = j.view("alice", task)
    base_is_a = task.left_model == MODELS[0]
    assert (view.a_wrong_language, view.b_wrong_language) == (base_is_a, not base_is_a)
    assert (view.a_correct if base_is_a else view.b_correct) is False
    j.store.close()


def test_bad_handles(judging):
    for handle in ("item-999#0", "item-001#1", "item-001", "", "item-001#x"):
        with pytest.raises(FireflyError, match="no such item"):
            judging.vote("alice", handle, "A")
    with pytest.raises(FireflyError, match="choice"):
        judging.vote("alice", "item-001#0", "left")


def test_results_markdown_counts(judging):
    judging.store.add_annotator("alice")
    judging.store.add_annotator("bob")
    assert "**0 votes**" in judging.results_markdown()
    for who in ("alice", "bob"):
        task = judging.task(who, "item-002#0")
        judging.vote(who, task.handle, "A" if task.left_model == MODELS[1] else "B")  # the tuned model wins
    md = judging.results_markdown(n_resamples=200)
    assert "**2 votes**" in md
    assert f"{MODELS[0]} vs {MODELS[1]}: win / tie / loss = 0 / 0 / 2" in md
    assert "| alice | 1 / 12 |" in md and "| bob | 1 / 12 |" in md
