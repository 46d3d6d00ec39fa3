"""Security against a real server: no model name reaches the browser, tokens gate everything, annotators
are isolated, the results need the admin token, and HTML in answers runs nothing."""
import pytest

from firefly_eval.votes import read_votes


@pytest.fixture(scope="module")
def served(tmp_path_factory, kit):
    """One server for the module; each test signs in annotators of its own."""
    folder = tmp_path_factory.mktemp("security")
    set_path, answers, db = kit.make_judge_files(folder)
    kit.add_annotator(db, "root", admin=True, set_path=set_path, answers=answers)
    server = kit.Server(set_path, answers, db, folder / "server.log").start()
    yield server, db, kit
    server.stop()


def _token(served, name, admin=False):
    return served[2].add_annotator(served[1], name, admin=admin)


def _leaks(session, models) -> list[str]:
    raw = "\n".join(session.raw)
    return [m for m in models if m in raw]


def test_model_names_never_reach_the_browser(served):
    server, db, kit = served
    s = kit.HttpSession(server.url)
    s.get("/")
    s.get("/gradio_api/info")
    s.call("sign_in", _token(served, "carol"))
    for _ in range(12):  # vote through the whole set, objective items included
        msg = s.call("vote_a", _handle(s), "correct", "wrong", "ok")
        assert msg["success"], msg
    s.call("skip", "item-000#0")
    assert len([v for v in read_votes(db) if v.annotator == "carol"]) == 12
    assert len("\n".join(s.raw)) > 10_000 and _leaks(s, kit.MODELS) == []


def _handle(s) -> str:
    """The handle the page currently shows (the last 'item-NNN#P' string received)."""
    import re

    return re.findall(r'"(item-\d{3}#\d+)"', "\n".join(s.raw))[-1]


@pytest.mark.parametrize("token", ["", "wrong-token", "x" * 64])
def test_wrong_or_missing_token_sees_nothing(served, token):
    server, db, kit = served
    before = read_votes(db)
    s = kit.HttpSession(server.url)
    msg = s.call("sign_in", token)
    assert "Unknown token" in s.text(msg)
    assert "题" not in s.text(msg) and "春风" not in s.text(msg) and "item-" not in s.text(msg)
    for api, args in (("vote_a", ("item-002#0", None, None, "")), ("skip", ("item-002#0",)), ("results", ())):
        msg = s.call(api, *args)
        assert not msg["success"]
    assert "题" not in "\n".join(s.raw) and "春风" not in "\n".join(s.raw)
    assert read_votes(db) == before


def test_annotators_cannot_touch_each_others_votes(served):
    server, db, kit = served
    alice, bob = kit.HttpSession(server.url), kit.HttpSession(server.url)
    alice.call("sign_in", _token(served, "alice"))
    assert alice.call("vote_b", "item-002#0", None, None, "alice's")["success"]
    bob.call("sign_in", _token(served, "bob"))
    # bob sends a vote for the same item: it is his own row, alice's stays as it was
    assert bob.call("vote_a", "item-002#0", None, None, "bob's")["success"]
    assert "alice's" not in "\n".join(bob.raw)
    votes = {v.annotator: (v.item_id, v.choice, v.comment) for v in read_votes(db) if v.annotator in ("alice", "bob")}
    assert votes["alice"][0] == "item-002" and votes["alice"][2] == "alice's"
    assert votes["bob"][0] == "item-002" and votes["bob"][2] == "bob's"


def test_results_need_the_admin_token(served):
    server, db, kit = served
    s = kit.HttpSession(server.url)
    dave = _token(served, "dave")
    s.call("sign_in", dave)
    msg = s.call("results")
    assert not msg["success"] and "admin token" in msg["output"]["error"]
    assert "admin token" in s.text(s.call("admin_sign_in", dave))  # the results page refuses him too
    assert not s.call("results")["success"]
    assert s.call("vote_tie", "item-002#0", None, None, "")["success"]
    admin = kit.HttpSession(server.url)
    erin = _token(served, "erin", admin=True)
    admin.call("sign_in", erin)  # judging as an admin: blind like everyone, no results
    assert not admin.call("results")["success"] and _leaks(admin, kit.MODELS) == []
    admin.call("admin_sign_in", erin)  # the results page (/results)
    msg = admin.call("results")
    assert msg["success"] and f"**{len(read_votes(db))} votes**" in admin.text(msg)
    assert "| dave | 1 / 12 |" in admin.text(msg)
    assert kit.MODELS[0] in admin.text(msg)  # the results page is where model names are shown


@pytest.mark.browser
def test_html_in_answers_runs_nothing(served, browser):
    server, db, kit = served
    token = _token(served, "frank")
    http = kit.HttpSession(server.url)  # skip (over HTTP) to the item whose answers carry the payloads
    http.call("sign_in", token)
    while not _handle(http).startswith("item-001#"):
        http.call("skip", _handle(http))
    page = browser.new_page()
    page.goto(server.url)
    page.fill("#token input", token)
    page.click("#sign-in")
    page.wait_for_selector("#prompt:has-text('第1题：')")
    kit.settle(page)
    shown = page.inner_text("#answer-a") + page.inner_text("#answer-b")
    assert "<script>window.pwned=1</script>" in shown and '<img src=x onerror="window.pwned=1">' in shown
    for link in page.query_selector_all("#answer-a a, #answer-b a"):  # a javascript: link, if one survived
        link.click()
    page.wait_for_timeout(500)
    assert page.evaluate("typeof window.pwned") == "undefined"
    assert page.query_selector("#answer-a img, #answer-b img, #answer-a script, #answer-b script") is None
    page.close()
