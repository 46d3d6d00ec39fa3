"""The app in headless chromium: sign in, vote (buttons and keys), reload and resume, a server restart
(SIGTERM) that signs nobody out, the results page's tally moves."""
import re
import shutil
import sqlite3

import pytest

from firefly_eval.votes import read_votes

pytestmark = pytest.mark.browser


def _progress(page) -> int:
    return int(re.search(r"(\d+) / 12", page.inner_text("#status")).group(1))


def _vote(page, how: str, settle):
    before = _progress(page)
    if how.startswith("key:"):
        page.keyboard.press(how[4:])
    else:
        page.click(how)
    page.wait_for_function(f"() => document.querySelector('#status').innerText.includes('{before + 1} / 12')")
    settle(page)


def test_sign_in_vote_reload_resume_and_admin_tally(judge_files, server_factory, browser, kit):
    set_path, answers, db = judge_files
    token = kit.add_annotator(db, "alice", set_path=set_path, answers=answers)
    admin_token = kit.add_annotator(db, "root", admin=True)
    server = server_factory(set_path, answers, db)

    admin = browser.new_page()
    admin.goto(server.url + "/results")
    admin.fill("#admin-token input", admin_token)
    admin.click("#admin-sign-in")
    admin.wait_for_selector("#results:has-text('0 votes')")

    page = browser.new_page()
    page.goto(server.url)
    page.wait_for_selector("#sign-in")
    assert not page.is_visible("#prompt") and not page.is_visible("#status")
    page.fill("#token input", token)
    page.click("#sign-in")
    page.wait_for_selector("#status:has-text('alice')")
    kit.settle(page)
    assert _progress(page) == 0 and page.inner_text("#prompt").startswith("第")
    for how in ("#vote-a", "key:2", "#vote-b", "key:3"):
        if page.is_visible("#a-correct"):  # objective item: the checker pre-filled both verdicts
            assert page.is_checked("#a-correct input[value=correct]") != page.is_checked("#b-correct input[value=correct]")
        _vote(page, how, kit.settle)
    page.fill("#comment textarea", "两个都不错")
    page.keyboard.press("Escape")
    page.locator("body").click(position={"x": 5, "y": 5})
    _vote(page, "key:1", kit.settle)
    assert _progress(page) == 5
    shown = page.inner_text("#prompt")

    votes = read_votes(db)
    assert len(votes) == 5 and {v.annotator for v in votes} == {"alice"}
    assert [v.comment for v in votes].count("两个都不错") == 1

    page.reload()  # the token is remembered: the page signs in again and resumes
    page.wait_for_selector("#status:has-text('5 / 12')")
    kit.settle(page)
    assert page.inner_text("#prompt") == shown

    admin.click("#refresh")
    admin.wait_for_selector("#results:has-text('5 votes')")
    assert "model-base-7f3 vs model-tuned-9c1: win / tie / loss" in admin.inner_text("#results")

    # a restart: SIGTERM shuts down cleanly, the database is one file again (nothing left in the -wal file)
    assert server.terminate() == 0
    assert not db.with_name(db.name + "-wal").exists() or db.with_name(db.name + "-wal").stat().st_size == 0
    copy = db.with_name("copy.sqlite")
    shutil.copy(db, copy)  # the main file alone holds every vote
    assert sqlite3.connect(copy).execute("SELECT count(*) FROM votes").fetchone()[0] == 5
    server.start()
    kit.reopen(page)  # the remembered token still opens (its key is kept in the database): nobody is signed out
    page.wait_for_selector("#status:has-text('5 / 12')")
    kit.settle(page)
    assert page.inner_text("#prompt") == shown and not page.is_visible("#sign-in")
    kit.reopen(admin)
    admin.wait_for_selector("#results:has-text('5 votes')")

    page.click("#sign-out")  # forgets the token: a reload shows the sign-in form again
    page.wait_for_selector("#sign-in")
    kit.settle(page)
    page.wait_for_timeout(300)
    page.reload()
    page.wait_for_selector("#sign-in")
    kit.settle(page)
    assert not page.is_visible("#status")
    page.close()
    admin.close()
