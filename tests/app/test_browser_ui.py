"""What an annotator sees, in headless chromium, on a set in the seed's own xlsx form (columns kind and
instruction only): answers as the models wrote them, panes and buttons, inline messages, going back,
skipped items, the end page, blind judging for admins, the results page. Screenshots are written to each
test's temporary folder (`pytest --basetemp=DIR` keeps them in DIR): look at them."""
import re

import pandas as pd
import pytest

from firefly_eval.eval_set import load_set
from firefly_eval.votes import read_votes

pytestmark = pytest.mark.browser

STEPS = "第一步：小明原来有 3 个苹果。\n第二步：又买了 4 个，3 + 4 = 7。\n答案：一共 7 个。"
LONG_PROSE = "这是一段放在代码块里的说明文字，没有换行，" * 60  # ~1,300 characters on one line
SEED_ROWS = [  # kind, instruction; "open\u00a0QA" and "Closed  QA" are the seed's kinds written another way
    ("math", "小明有3个苹果，又买了4个，一共有几个？请一步一步算。"),
    ("generation", "写一篇介绍长城的长文章。"),
    ("code", "用Python写一个函数判断素数，并在代码块里写一段说明。"),
    ("open\u00a0QA", "北京是哪个国家的首都？请简单介绍一下。"),
    ("open qa", "上海有哪些著名的景点？"),
    ("Closed  QA", "《红楼梦》的作者是谁？"),
]
ANSWERS = {  # item id -> (model 0's answer, model 1's answer)
    "math-01": (STEPS, "3+4=7，一共有7个苹果。"),
    "generation-01": ("长城" + "是中国古代的伟大工程，绵延万里。" * 1300, ""),
    "code-01": (f"```text\n{LONG_PROSE}\n```\n\n```python\ndef is_prime(n):\n    return n > 1 and all(n % k for k in range(2, n))\n```",
                "- **思路**：试除法\n- 复杂度：O(n)\n\n```python\ndef is_prime(n): ...\n```"),
    "open_qa-01": ("Beijing is the capital of China, a city with a very long history.", "北京是中国的首都，历史悠久。"),
    "open_qa-02": ("Shanghai tiene muchos lugares famosos, como el Bund y la torre de la Perla.", "外滩、东方明珠和豫园。"),
    "closed_qa-01": ("曹雪芹。", "施耐庵。"),
}
MODELS = ("model-base-7f3", "model-tuned-9c1")
# [scrollHeight, clientHeight] of the element (or descendant) of `sel` that scrolls vertically, or null
SCROLLER = """(sel) => {
  const root = document.querySelector(sel);
  for (const e of [root, ...root.querySelectorAll('*')]) {
    const oy = getComputedStyle(e).overflowY;
    if ((oy === 'auto' || oy === 'scroll') && e.scrollHeight > e.clientHeight + 1) return [e.scrollHeight, e.clientHeight];
  }
  return null;
}"""
# [text, disabled] of every button shown, and the text of every heading or label shown
SHOWN = """() => {
  const shown = (sel) => [...document.querySelectorAll(sel)].filter(e => e.checkVisibility({visibilityProperty: true}));
  return {buttons: shown('button').map(e => [e.innerText.trim(), e.disabled]),
          headings: shown('h1, h2, h3, h4, label').map(e => e.innerText.trim())};
}"""


@pytest.fixture(scope="module")
def ui(tmp_path_factory, kit):
    folder = tmp_path_factory.mktemp("ui")
    set_path = folder / "seed130.xlsx"
    pd.DataFrame(SEED_ROWS, columns=["kind", "instruction"]).to_excel(set_path, index=False)
    answers = [kit.write_answer_file(folder / f"m{k}.jsonl", set_path, m, {i: a[k] for i, a in ANSWERS.items()})
               for k, m in enumerate(MODELS)]
    db = folder / "votes.sqlite"
    kit.add_annotator(db, "root", admin=True, set_path=set_path, answers=answers)
    server = kit.Server(set_path, answers, db, folder / "server.log").start()
    yield server, db, kit, set_path, answers
    server.stop()


def test_seed_xlsx_imports_with_normalised_kinds_and_objective_items(ui):
    eval_set = load_set(ui[3])
    assert [it.id for it in eval_set.items] == list(ANSWERS)
    assert [it.id for it in eval_set.items if it.objective] == ["math-01", "closed_qa-01"]
    assert all(it.reference is None for it in eval_set.items)


def _page(browser, ui, name, first_item=None, admin=False):
    """A page signed in as a new annotator; with `first_item`, the items before it are skipped (over HTTP)."""
    server, db, kit = ui[:3]
    token = kit.add_annotator(db, name, admin=admin)
    if first_item:
        http = kit.HttpSession(server.url)
        http.call("sign_in", token)
        while not _handle(http).startswith(first_item + "#"):
            http.call("skip", _handle(http))
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(server.url)
    page.fill("#token input", token)
    page.click("#sign-in")
    page.wait_for_selector(f"#status:has-text('{name}')")
    kit.settle(page)
    return page, token


def _handle(http) -> str:
    return re.findall(r'"((?:math|generation|code|open_qa|closed_qa)-\d\d#\d+)"', "\n".join(http.raw))[-1]


def _shot(page, tmp_path, name):
    # Gradio fades updated components in (and its loading overlays out): wait for the transitions to end
    page.wait_for_function("() => document.getAnimations().every(a => a.playState !== 'running')")
    path = tmp_path / f"{name}.png"
    page.screenshot(path=str(path), full_page=False)
    return path


def _side_of(db, annotator, item_id, model_index) -> str:
    """'a' or 'b': where the given model's answer is shown to the annotator."""
    from firefly_eval.votes import VoteStore

    with VoteStore.open_existing(db) as store:
        left = store.left_model_for(annotator, item_id, MODELS)
    return "a" if left == MODELS[model_index] else "b"


def test_answers_as_written_in_equal_scrollable_panes_buttons_in_view(ui, browser, tmp_path):
    """Points 4 and 5: single newlines kept, prose in code blocks wrapped, a 20,000-character answer in a
    scrolling pane of the same height as an empty one, which says so, and the buttons always in view."""
    server, db, kit = ui[:3]
    page, _ = _page(browser, ui, "ann-long", first_item="generation-01")
    long_side = _side_of(db, "ann-long", "generation-01", 0)
    empty_side = "b" if long_side == "a" else "a"
    assert page.inner_text(f"#answer-{empty_side}").strip() == "(empty answer)"
    boxes = {s: page.locator(f"#answer-{s}").bounding_box() for s in "ab"}
    assert abs(boxes["a"]["height"] - boxes["b"]["height"]) < 2 and boxes["a"]["height"] < 900
    scroll = page.evaluate(SCROLLER, f"#answer-{long_side}")
    assert scroll and scroll[0] > 10 * scroll[1]  # the long answer scrolls inside its pane
    assert page.evaluate("document.documentElement.scrollHeight") < 2 * 900  # not 14,800 px
    for where in ("top", "bottom"):
        page.evaluate("window.scrollTo(0, 0)" if where == "top" else "window.scrollTo(0, 1e6)")
        page.wait_for_timeout(100)
        for button in ("#vote-a", "#vote-tie", "#vote-b", "#skip"):
            box = page.locator(button).bounding_box()
            assert 0 <= box["y"] and box["y"] + box["height"] <= 900, (where, button, box)
    _shot(page, tmp_path, "long-and-empty")

    page.close()

    page, _ = _page(browser, ui, "ann-code", first_item="code-01")
    prose_side = _side_of(db, "ann-code", "code-01", 0)
    page.wait_for_selector(f"#answer-{prose_side} pre")
    widths = page.evaluate(f"[...document.querySelectorAll('#answer-{prose_side} pre')]"
                           ".map(e => [e.scrollWidth, e.clientWidth])")
    assert widths and all(sw <= cw + 1 for sw, cw in widths), widths  # wrapped, not 2,257 px in a 1,216 px box
    _shot(page, tmp_path, "code-prose-wrapped")
    page.close()

    page, _ = _page(browser, ui, "ann-steps", first_item="math-01")
    steps_side = _side_of(db, "ann-steps", "math-01", 0)
    lines = [ln for ln in page.inner_text(f"#answer-{steps_side}").splitlines() if ln.strip()]
    assert lines == STEPS.splitlines()  # three lines, as written
    assert page.inner_text("#reference").startswith("No reference answer")
    _shot(page, tmp_path, "steps")
    page.close()


def test_objective_vote_without_verdicts_one_inline_message(ui, browser, tmp_path):
    """Point 6 (and 2): the seed's objective item has no reference: the annotator marks each side; voting
    first gives one message by the buttons, nothing else turns red, the radios work at once."""
    server, db, kit = ui[:3]
    page, _ = _page(browser, ui, "ann-obj", first_item="math-01")
    page.wait_for_selector("#a-correct", state="visible")  # the item's update can land after the sign-in's
    assert page.is_visible("#a-correct") and page.is_visible("#b-correct")
    assert not page.is_checked("#a-correct input[value=correct]") and not page.is_checked("#a-correct input[value=wrong]")
    page.click("#vote-a")
    page.wait_for_selector("#vote-msg:has-text('mark whether A and B are correct')")
    kit.settle(page)
    _shot(page, tmp_path, "objective-message")
    assert page.locator(".toast-body, .error").count() == 0 and page.get_by_text("Error", exact=True).count() == 0
    page.click("#a-correct label:has-text('correct')", timeout=2000)
    page.click("#b-correct label:has-text('wrong')", timeout=2000)
    page.click("#vote-b")
    page.wait_for_selector("#notice:has-text('Previous item saved')")
    kit.settle(page)
    assert page.inner_text("#vote-msg").strip() == ""
    assert "counted as A wins (objective item: correctness decides)" in page.inner_text("#notice")
    [vote] = [v for v in read_votes(db) if v.annotator == "ann-obj"]
    assert (vote.item_id, vote.choice, vote.left_correct, vote.right_correct) == ("math-01", "right", True, False)
    page.close()


def test_wrong_language_side_loses_in_ui_vote_and_tally(ui, browser, tmp_path):
    """Point 1: the English (and the Spanish) answer is flagged by its script, and a vote for it counts as
    a loss on screen, in the stored vote and in the tally."""
    server, db, kit = ui[:3]
    page, _ = _page(browser, ui, "ann-lang", first_item="open_qa-01")
    english = _side_of(db, "ann-lang", "open_qa-01", 0)
    other = "b" if english == "a" else "a"
    assert "mainly Latin-script text" in page.inner_text(f"#flag-{english}")
    boxes = [page.locator(f"#answer-{s}").bounding_box() for s in "ab"]  # a flag does not shift the panes
    assert abs(boxes[0]["y"] - boxes[1]["y"]) < 2 and abs(boxes[0]["height"] - boxes[1]["height"]) < 2
    assert page.is_checked(f"#{english}-wrong-language input") and not page.is_checked(f"#{other}-wrong-language input")
    _shot(page, tmp_path, "wrong-language")
    page.click(f"#vote-{english}")  # the annotator prefers the English answer
    page.wait_for_selector("#notice:has-text('Previous item saved')")
    kit.settle(page)
    assert f"counted as {other.upper()} wins ({english.upper()} is not in Chinese" in page.inner_text("#notice")
    page.close()
    page, _ = _page(browser, ui, "ann-lang2", first_item="open_qa-02")  # Spanish: flagged as Latin script too
    spanish = _side_of(db, "ann-lang2", "open_qa-02", 0)
    assert "mainly Latin-script text" in page.inner_text(f"#flag-{spanish}")
    assert page.is_checked(f"#{spanish}-wrong-language input")
    page.close()

    from firefly_eval.tally import tally

    [vote] = [v for v in read_votes(db) if v.annotator == "ann-lang"]
    assert vote.choice == ("left" if english == "a" else "right")
    assert (vote.left_wrong_language, vote.right_wrong_language) == ((True, False) if english == "a" else (False, True))
    [pair] = tally([vote], n_resamples=100)["pairs"]
    assert (pair["model_a"], pair["loss"], pair["win"]) == (MODELS[0], 1, 0)  # the English model lost


def _end_page_shows_only(page, heading: str, buttons: list[str]) -> None:
    """The end page shows its heading and these buttons (all enabled): no empty headers, nothing disabled."""
    shown = page.evaluate(SHOWN)
    assert shown["headings"] == [heading], shown
    assert shown["buttons"] == [[b, False] for b in ["← Change last vote", "Sign out", *buttons]], shown


def test_change_last_vote_and_skipped_items_and_end_page(ui, browser, tmp_path):
    """Points 7, 8 and 10 (end page): the confirmation names the previous item, the last vote can be
    changed; when only skipped items are left the annotator is told and may finish or revisit; the end
    pages (only skipped left, finished, all done) show no empty headers or disabled buttons."""
    server, db, kit = ui[:3]
    page, _ = _page(browser, ui, "ann-flow")
    first = page.inner_text("#prompt")
    page.fill("#comment textarea", "第一条")
    if page.is_visible("#a-correct"):
        page.click("#a-correct label:has-text('correct')")
        page.click("#b-correct label:has-text('correct')")
    page.click("#vote-a")
    page.wait_for_selector("#notice:has-text('Previous item saved')")
    kit.settle(page)
    assert page.inner_text("#prompt") != first
    page.click("#back")
    page.wait_for_selector("#notice:has-text('Changing your last vote')")
    kit.settle(page)
    assert page.inner_text("#prompt") == first and page.input_value("#comment textarea") == "第一条"
    _shot(page, tmp_path, "change-last-vote")
    page.click("#vote-tie")
    page.wait_for_selector("#notice:has-text('Previous item saved')")
    kit.settle(page)
    votes = [v for v in read_votes(db) if v.annotator == "ann-flow"]
    assert [(v.choice, v.comment) for v in votes] == [("tie", "第一条")]

    skipped = 0
    while not page.is_visible("#end"):  # skip everything else
        skipped += 1
        page.click("#skip")
        page.wait_for_selector(f"#status:has-text('{skipped} skipped')")
        kit.settle(page)
    assert skipped == len(ANSWERS) - 1
    page.wait_for_selector("#end:has-text('Only skipped items are left')")
    assert not page.is_visible("#vote-a") and not page.is_visible("#answer-a")
    kit.settle(page)
    _end_page_shows_only(page, "Only skipped items are left", ["Revisit the skipped items", "Finish"])
    _shot(page, tmp_path, "only-skipped-left")
    page.click("#finish")
    page.wait_for_selector("#end:has-text('Finished')")
    kit.settle(page)
    _end_page_shows_only(page, "Finished", ["Revisit the skipped items"])
    _shot(page, tmp_path, "finished")
    page.click("#revisit")
    page.wait_for_selector("#answer-a")
    kit.settle(page)
    assert page.is_visible("#vote-a") and "5 skipped" not in page.inner_text("#status")
    for done in range(2, len(ANSWERS) + 1):  # judge the revisited items: the end page says "All done"
        if page.is_visible("#a-correct"):
            page.click("#a-correct label:has-text('correct')")
            page.click("#b-correct label:has-text('wrong')")
        page.click("#vote-b")
        page.wait_for_selector(f"#status:has-text('{done} / {len(ANSWERS)}')")
        kit.settle(page)
    page.wait_for_selector("#end:has-text('All done')")
    kit.settle(page)
    _end_page_shows_only(page, "All done", [])
    _shot(page, tmp_path, "all-done")
    assert len([v for v in read_votes(db) if v.annotator == "ann-flow"]) == len(ANSWERS)
    page.close()


def test_admin_judges_blind_and_results_page(ui, browser, tmp_path):
    """Point 10: an admin judging sees no model name nor count; the results are on /results, whole lines."""
    server, db, kit = ui[:3]
    page, admin_token = _page(browser, ui, "boss", admin=True)
    text = page.content()
    assert not any(m in text for m in MODELS) and "votes**" not in text and not page.is_visible("#results")
    assert page.get_by_role("tab", name="Results").count() == 0
    page.close()

    for k in range(2):  # two annotators on the same item, so the agreement line has something to say
        http = kit.HttpSession(server.url)
        http.call("sign_in", kit.add_annotator(db, f"agree{k}"))
        http.call("vote_tie", _handle(http), "correct", "correct", "")
    results = browser.new_page(viewport={"width": 1000, "height": 900})
    results.goto(server.url + "/results")
    results.fill("#admin-token input", admin_token)
    results.click("#admin-sign-in")
    results.wait_for_selector("#results:has-text('votes')")
    kit.settle(results)
    assert MODELS[0] in results.inner_text("#results")
    widths = results.evaluate("[...document.querySelectorAll('#results pre')].map(e => [e.scrollWidth, e.clientWidth])")
    assert widths and all(sw <= cw + 1 for sw, cw in widths), widths
    assert "agreement on" in results.inner_text("#results")
    _shot(results, tmp_path, "results")
    results.close()
