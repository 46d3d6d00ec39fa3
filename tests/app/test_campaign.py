"""A campaign as a new team would run it: the seed's own format (an xlsx with columns kind and instruction
only) built from eval_sets/zh130.jsonl, `add-annotator` for 3 annotators and an admin, 3 annotators x 130
items in headless chromium, one server restart (SIGTERM) in the middle, then `firefly-eval tally` and
`firefly-eval report`. Nobody is signed out by the restart, and every vote counts as its confirmation said."""
import hashlib
import json
import re
import subprocess
import sys
import time
from collections import Counter

import pandas as pd
import pytest

from firefly_eval.eval_set import SEED_KINDS, load_set
from firefly_eval.votes import read_votes

pytestmark = [pytest.mark.browser, pytest.mark.slow]

MODELS = ("llama2-base", "firefly-tuned")
ANNOTATORS = ("ann1", "ann2", "ann3")
SEED_KIND_OF = {task: kind for kind, task in SEED_KINDS.items()}


def _h(*parts) -> int:
    return hashlib.sha256("\0".join(map(str, parts)).encode()).digest()[0]


def _answer(model: str, item) -> str:
    k = _h(model, item.id)
    if model == MODELS[0] and k % 9 == 0:
        return "This answer is written in English, which is the wrong language for this prompt."
    if k % 17 == 0:
        return ""
    return f"**{model[:5]}** 的回答：\n第一步，读题。\n第二步，作答（{item.task}）。\n\n```python\nprint('{item.id}')\n```"


def _seed_xlsx(tmp_path, kit):
    ours = load_set(kit.REPO / "eval_sets" / "zh130.jsonl")
    rows = [{"kind": SEED_KIND_OF[it.task].upper() if n % 3 == 0 else SEED_KIND_OF[it.task], "instruction": it.prompt}
            for n, it in enumerate(ours.items)]
    path = tmp_path / "seed130.xlsx"
    pd.DataFrame(rows).to_excel(path, index=False)
    return path


def _cli(kit, module, *args) -> str:
    out = subprocess.run([sys.executable, "-m", module, *map(str, args)], env=kit.judge_env(), cwd=kit.REPO,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def _vote_once(page, kit, name, counted: list, done_before: int) -> None:
    """One vote as the annotator would: mark correctness on objective items, pick a button."""
    prompt = page.inner_text("#prompt")
    k = _h(name, prompt)
    if page.is_visible("#a-correct"):
        page.click(f"#a-correct label:has-text('{'correct' if k % 2 else 'wrong'}')")
        page.click(f"#b-correct label:has-text('{'correct' if k % 3 else 'wrong'}')")
    page.click(("#vote-a", "#vote-tie", "#vote-b")[k % 3])
    page.wait_for_function(f"() => document.querySelector('#status').innerText.includes('{done_before + 1} / 130')")
    kit.settle(page)
    counted.append(re.search(r"counted as (A wins|B wins|tie)", page.inner_text("#notice")).group(1))


def test_campaign_3_annotators_130_items_with_a_restart(tmp_path, kit, browser):
    t0 = time.monotonic()
    set_path = _seed_xlsx(tmp_path, kit)
    eval_set = load_set(set_path)
    assert len(eval_set) == 130 and sum(it.objective for it in eval_set.items) == 50
    answers = [kit.write_answer_file(tmp_path / f"{m}.jsonl", set_path, m, {it.id: _answer(m, it) for it in eval_set.items})
               for m in MODELS]
    db = tmp_path / "votes.sqlite"
    _cli(kit, "human_eval_app.cli", "add-annotator", "coordinator", "--admin", "--db", db, "--set", set_path,
         "--answers", *answers)
    tokens = {name: _cli(kit, "human_eval_app.cli", "add-annotator", name, "--db", db).strip() for name in ANNOTATORS}
    server = kit.Server(set_path, answers, db, tmp_path / "server.log").start()

    pages, counted = {}, {name: [] for name in ANNOTATORS}
    for name in ANNOTATORS:
        page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()  # a browser each
        page.goto(server.url)
        page.fill("#token input", tokens[name])
        page.click("#sign-in")
        page.wait_for_selector(f"#status:has-text('{name}')")
        kit.settle(page)
        pages[name] = page

    def judge(until: int) -> None:
        for n in range(len(counted[ANNOTATORS[0]]), until):
            for name in ANNOTATORS:  # round robin: the three vote at the same time
                _vote_once(pages[name], kit, name, counted[name], n)

    judge(65)
    page = pages["ann2"]  # ann2 changes her last vote
    page.click("#back")
    page.wait_for_selector("#notice:has-text('Changing your last vote')")
    kit.settle(page)
    if page.is_visible("#a-correct"):
        page.click("#a-correct label:has-text('correct')")
        page.click("#b-correct label:has-text('correct')")
    page.click("#vote-tie")
    page.wait_for_selector("#notice:has-text('Previous item saved')")
    kit.settle(page)
    counted["ann2"][-1] = re.search(r"counted as (A wins|B wins|tie)", page.inner_text("#notice")).group(1)

    assert server.terminate() == 0  # the restart
    server.start()
    for name, page in pages.items():  # a reload signs each in again from the remembered token
        kit.reopen(page)
        page.wait_for_selector(f"#status:has-text('{name} · 65 / 130')")
        kit.settle(page)
        assert not page.is_visible("#sign-in")
    judge(130)
    for page in pages.values():
        page.wait_for_selector("#end:has-text('All done')")
        assert not page.is_visible("#vote-a")
    server.terminate()

    votes = read_votes(db)
    assert Counter(v.annotator for v in votes) == {name: 130 for name in ANNOTATORS}
    # what each confirmation said, put in model names with the sides as recorded (votes in the order cast):
    # the tally must count exactly that
    tally_json = tmp_path / "tally.json"
    table = _cli(kit, "firefly_eval.cli", "tally", "--db", db, "--set", set_path, "-o", tally_json, "--bootstrap", "200")
    result = json.loads(tally_json.read_text(encoding="utf-8"))
    [pair] = result["pairs"]
    expected = Counter()
    for name in ANNOTATORS:
        cast = sorted((v for v in votes if v.annotator == name), key=lambda v: v.created_at)
        for vote, said in zip(cast, counted[name], strict=True):
            winner = {"A wins": vote.left_model, "B wins": vote.right_model, "tie": None}[said]
            expected["tie" if winner is None else "win" if winner == pair["model_a"] else "loss"] += 1
    assert (pair["win"], pair["tie"], pair["loss"]) == (expected["win"], expected["tie"], expected["loss"])
    assert pair["n"] == 390 and result["n_annotators"] == 3
    assert any(v.left_wrong_language or v.right_wrong_language for v in votes)  # the rule was exercised
    assert "firefly-tuned vs llama2-base: win / tie / loss" in table
    report = tmp_path / "report" / "REPORT.md"
    _cli(kit, "firefly_eval.cli", "report", "--tally", tally_json, "-o", report)
    assert "firefly-tuned" in report.read_text(encoding="utf-8")
    print(f"\ncampaign: 3 annotators x 130 items with a restart, tally and report: {time.monotonic() - t0:.0f} s")
