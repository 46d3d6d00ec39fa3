"""Judging: queues, sides, resume, skip, objective items, what a view may contain, the admin tally."""
import dataclasses

import pytest

from firefly_core.errors import FireflyError
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
    # only the skipped item is left: no item is offered (the app asks: revisit or finish)
    assert judging.next_task("alice") is None and judging.skipped_left("alice") == 1
    judging.revisit_skipped("alice")
    assert judging.next_task("alice").handle == queue[0] and judging.skipped_left("alice") == 0
    judging.vote("alice", queue[0], "tie", False, False)
    assert judging.next_task("alice") is None and judging.progress("alice") == (12, 12)
    assert judging.skipped_left("alice") == 0


def test_skip_of_a_voted_item_keeps_the_vote(judging):
    judging.store.add_annotator("alice")
    task = judging.next_task("alice")
    judging.vote("alice", task.handle, "B", False, True)
    assert judging.skip("alice", task.handle) is False
    assert judging.skipped_left("alice") == 0 and judging.store.votes_of("alice")[0].choice == "right"


def test_last_vote_goes_back_with_what_was_recorded(judging):
    judging.store.add_annotator("alice")
    assert judging.last_vote("alice") is None
    first = judging.next_task("alice")
    judging.vote("alice", first.handle, "A", True, False, comment="第一")
    second = judging.next_task("alice")
    judging.vote("alice", second.handle, "B", False, False, comment="第二")
    task, vote = judging.last_vote("alice")
    assert task.handle == second.handle and vote.comment == "第二"
    view = judging.view("alice", task, vote)
    assert (view.voted, view.comment) == ("B", "第二")
    if task.item.objective:
        assert (view.a_correct, view.b_correct) == (False, False)
    judging.vote("alice", task.handle, "tie", True, True, comment="改了")  # changed: replaces, counts once
    assert judging.progress("alice") == (2, 12)
    assert [(v.item_id, v.choice) for v in judging.store.votes_of("alice")] == [
        (first.item.id, "left"), (second.item.id, "tie")]


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
    assert (view.a_script, view.b_script) == (("Latin", None) if base_is_a else (None, "Latin"))
    assert (view.a_correct if base_is_a else view.b_correct) is False  # objective: pre-marked wrong
    assert not view.language_rule  # on objective items correctness carries it
    j.store.close()


def test_wrong_language_on_open_ended_items_stored_and_counted(judge_files):
    """The seed's rule means the same in the view, the stored vote and its outcome: the side in the
    wrong language loses, whatever was pressed, unless both are."""
    set_path, answers, db = judge_files
    lines = answers[0].read_text(encoding="utf-8").splitlines()
    lines[3] = lines[3].replace("春风慢慢吹过田野。", "The spring wind blows over the fields.")  # item-002, base
    answers[0].write_text("\n".join(lines) + "\n", encoding="utf-8")
    j = Judging.open(set_path, answers, db)
    j.store.add_annotator("alice")
    task = j.task("alice", "item-002#0")
    view = j.view("alice", task)
    base = "A" if task.left_model == MODELS[0] else "B"
    tuned = "B" if base == "A" else "A"
    assert view.language_rule and (view.a_wrong_language, view.b_wrong_language) == (base == "A", base == "B")
    vote = j.vote("alice", "item-002#0", base)  # preferred the English answer; flags from the detector
    assert (vote.left_wrong_language, vote.right_wrong_language) == (base == "A", base == "B")
    assert j.outcome_text(vote) == f"counted as {tuned} wins ({base} is not in Chinese: the wrong-language side loses)"
    from firefly_eval.tally import outcome_for

    assert outcome_for(vote, MODELS[0], objective=False) == "loss"
    # the annotator may overrule the detector (both flags given): then the choice stands
    vote = j.vote("alice", "item-002#0", base, a_wrong_language=False, b_wrong_language=False)
    assert j.outcome_text(vote) == f"counted as {base} wins" and outcome_for(vote, MODELS[0], objective=False) == "win"
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
