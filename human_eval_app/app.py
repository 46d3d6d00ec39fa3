"""The judging page and the results page (Gradio Blocks): layout and wiring only; every decision is in
`session.Judging`.

Who is signed in lives in a `gr.State` (kept on the server); the browser gets the prompt, the answers as
A and B and an opaque handle, never a model name, whoever signs in (an admin judges blind too). The token is
remembered in the browser's localStorage (`gr.BrowserState`, encrypted with a key kept in the votes
database, so a restarted server still reads it): a reload signs in again and resumes. (Gradio encrypts in
the browser with a key sent in the page's config: what keeps the token to this site is the browser's
same-origin storage, so a key that outlives a restart protects it no less than a new one each launch.) The results (model
names, live counts) are on a separate page, `/results`, that asks for an admin token of its own.
Handlers return `{component: update}` dicts: only what changes is sent.
"""
from __future__ import annotations

from types import SimpleNamespace

import gradio as gr

from firefly_core.errors import FireflyError
from firefly_eval.votes import Vote
from human_eval_app.render import answer_markdown, safe_markdown
from human_eval_app.session import Annotator, Judging, Task

VERDICTS = ["correct", "wrong"]
# What the browser remembers after signing out (gr.BrowserState does not store empty values).
SIGNED_OUT = "signed-out"
RESULTS_PATH = "results"
SCRIPT_NAMES = {"Latin": "Latin-script text (English, Spanish, French…)", "Cyrillic": "Cyrillic text (Russian…)",
                "Greek": "Greek text", "Hangul": "Korean (Hangul)"}
BUTTON_LABELS = {"A": "A better", "B": "B better", "tie": "Tie"}
# Keyboard shortcuts: 1/a = A better, 2/t = tie, 3/b = B better, s = skip (not while typing in a field).
SHORTCUTS_JS = """
<script>
document.addEventListener("keydown", (e) => {
  const t = e.target;
  if (e.ctrlKey || e.metaKey || e.altKey || (t && (t.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(t.tagName)))) return;
  const id = {"1": "vote-a", "a": "vote-a", "2": "vote-tie", "t": "vote-tie", "3": "vote-b", "b": "vote-b",
              "s": "skip"}[e.key.toLowerCase()];
  if (!id) return;
  const el = document.getElementById(id);
  const button = el && (el.tagName === "BUTTON" ? el : el.querySelector("button"));
  if (button && !button.disabled && button.offsetParent !== null) { e.preventDefault(); button.click(); }
});
</script>
"""
# Answers as the models wrote them: single newlines kept (line_breaks), long lines in code blocks wrapped;
# both answers in scrollable panes of one height; the vote buttons stay at the bottom of the window. The
# results page is only reached by its address (/results): the page list (navbar) is hidden.
CSS = """
.nav-holder { display: none !important; }
.answer-pane { border: 1px solid var(--border-color-primary); border-radius: var(--radius-md); padding: 4px 12px; }
.answer-pane pre, .answer-pane pre code, #results pre, #results pre code {
  white-space: pre-wrap !important; overflow-wrap: anywhere; word-break: break-word; }
#judge-box { padding-bottom: 120px; }
#vote-bar { position: fixed; left: 0; right: 0; bottom: 0; z-index: 50; padding: 8px 32px;
  background: var(--background-fill-primary); border-top: 1px solid var(--border-color-primary); }
#vote-msg:empty, #notice:empty, #handle { display: none !important; }
#vote-msg { color: var(--error-text-color); font-weight: 600; }
"""
ANSWER_HEIGHT = "42vh"


def _verdict(value: bool | None) -> str | None:
    return None if value is None else VERDICTS[0] if value else VERDICTS[1]


def _flag_text(script: str | None, side: str, objective: bool) -> str:
    if script is None:
        return ""
    consequence = ("pre-marked wrong" if objective else
                   f"{side} loses unless the other answer is not in Chinese either")
    return f"⚠ Not in Chinese: mainly {SCRIPT_NAMES[script]}. Seed rule: {consequence}."


def signin_column(heading: str, label: str, id_prefix: str):
    """(column, token box, sign-in button, message) of a sign-in form; element ids start with `id_prefix`."""
    with gr.Column(visible=True) as box:
        gr.Markdown(heading)
        token = gr.Textbox(label=label, type="password", elem_id=f"{id_prefix}token")
        button = gr.Button("Sign in", variant="primary", elem_id=f"{id_prefix}sign-in")
        message = gr.Markdown(elem_id=f"{id_prefix}sign-in-msg")
    return box, token, button, message


# Components that only trigger events or carry input; every other component of the judging page is an output
# of every event, so a handler may update any of them by returning it in its dict.
TRIGGERS = frozenset({"token", "signin_btn", "signout_btn", "vote_a", "vote_tie", "vote_b", "skip_btn"})


def judge_layout(judging: Judging) -> SimpleNamespace:
    """Every component of the judging page, by name (a new widget is added here and nowhere else)."""
    ui = SimpleNamespace()
    ui.who = gr.State(None)  # Annotator | None, server side
    ui.saved_token = gr.BrowserState("", storage_key="firefly_judge_token", secret=judging.store.browser_key)
    ui.signin_box, ui.token, ui.signin_btn, ui.signin_msg = signin_column(
        "## Firefly judge\nSign in with the token your coordinator gave you.", "Token", "")
    with gr.Column(visible=False) as ui.main_box:
        with gr.Row(equal_height=True):
            ui.status = gr.Markdown(elem_id="status")
            ui.notice = gr.Markdown(elem_id="notice")
            ui.back_btn = gr.Button("← Change last vote", size="sm", scale=0, elem_id="back", interactive=False)
            ui.signout_btn = gr.Button("Sign out", size="sm", scale=0, elem_id="sign-out")
        with gr.Column(visible=True, elem_id="judge-box") as ui.judge_box:
            ui.task_md = gr.Markdown(elem_id="task")
            ui.prompt_md = gr.Markdown(elem_id="prompt", sanitize_html=True, line_breaks=True)
            ui.reference_md = gr.Markdown(visible=False, elem_id="reference", sanitize_html=True, line_breaks=True)
            with gr.Row(equal_height=False):  # the panes have one fixed height: top-aligned, same size
                for side in ("a", "b"):
                    with gr.Column():
                        gr.Markdown(f"### {side.upper()}")
                        setattr(ui, f"answer_{side}", gr.Markdown(
                            elem_id=f"answer-{side}", elem_classes="answer-pane", sanitize_html=True,
                            line_breaks=True, height=ANSWER_HEIGHT))
                        setattr(ui, f"flag_{side}", gr.Markdown(elem_id=f"flag-{side}"))
                        setattr(ui, f"correct_{side}", gr.Radio(VERDICTS, label=f"{side.upper()} correct?",
                                                                visible=False, elem_id=f"{side}-correct"))
                        setattr(ui, f"lang_{side}", gr.Checkbox(
                            label=f"{side.upper()} is not in Chinese (wrong language: {side.upper()} loses)",
                            visible=False, elem_id=f"{side}-wrong-language"))
            ui.comment = gr.Textbox(label="Comment (optional)", lines=1, elem_id="comment")
            with gr.Column(elem_id="vote-bar"):
                with gr.Row():
                    ui.vote_a = gr.Button("A better [1]", variant="primary", elem_id="vote-a")
                    ui.vote_tie = gr.Button("Tie [2]", elem_id="vote-tie")
                    ui.vote_b = gr.Button("B better [3]", variant="primary", elem_id="vote-b")
                    ui.skip_btn = gr.Button("Skip [s]", variant="secondary", elem_id="skip")
                ui.vote_msg = gr.Markdown(elem_id="vote-msg")
            ui.handle = gr.Textbox(visible="hidden", elem_id="handle")
        with gr.Column(visible=False) as ui.end_box:
            ui.end_md = gr.Markdown(elem_id="end")
            with gr.Row():
                ui.revisit_btn = gr.Button("Revisit the skipped items", elem_id="revisit", visible=False)
                ui.finish_btn = gr.Button("Finish", variant="primary", elem_id="finish", visible=False)
    return ui


def wire_judging(demo: gr.Blocks, ui: SimpleNamespace, judging: Judging) -> None:
    """The judging page's events: each handler returns {component: update} for what changes."""
    screen = [c for name, c in vars(ui).items() if name not in TRIGGERS]

    def status_line(annotator: Annotator) -> str:
        done, total = judging.progress(annotator.name)
        skipped = judging.skipped_left(annotator.name)
        return f"**{safe_markdown(annotator.name)}** · {done} / {total}" + (f" · {skipped} skipped" if skipped else "")

    def task_screen(annotator: Annotator, task: Task, notice_text: str, vote: Vote | None = None) -> dict:
        """The task's page; with `vote`, the annotator's recorded vote on it, to change."""
        view = judging.view(annotator.name, task, vote)
        if view.voted:
            notice_text = (f"Changing your last vote ({BUTTON_LABELS[view.voted]}): vote again to replace it, "
                           "or Skip to keep it.")
        objective = (" · objective: mark each answer correct or wrong; correctness decides, both right or "
                     "both wrong is a tie") if view.objective else ""
        reference = (f"**Reference answer** (to help you judge):\n\n{safe_markdown(view.reference)}"
                     if view.reference else "**No reference answer:** judge correctness yourself.")
        return {
            ui.status: status_line(annotator), ui.notice: notice_text,
            ui.back_btn: gr.update(interactive=view.done > 0),
            ui.judge_box: gr.update(visible=True), ui.end_box: gr.update(visible=False),
            ui.task_md: f"Task: `{view.task}`{objective}", ui.prompt_md: safe_markdown(view.prompt),
            ui.reference_md: gr.update(value=reference, visible=view.objective),
            ui.flag_a: _flag_text(view.a_script, "A", view.objective), ui.answer_a: answer_markdown(view.answer_a),
            ui.correct_a: gr.update(value=_verdict(view.a_correct), visible=view.objective),
            ui.lang_a: gr.update(value=bool(view.a_wrong_language), visible=view.language_rule),
            ui.flag_b: _flag_text(view.b_script, "B", view.objective), ui.answer_b: answer_markdown(view.answer_b),
            ui.correct_b: gr.update(value=_verdict(view.b_correct), visible=view.objective),
            ui.lang_b: gr.update(value=bool(view.b_wrong_language), visible=view.language_rule),
            ui.comment: view.comment, ui.vote_msg: "", ui.handle: view.handle,
        }

    def end_screen(annotator: Annotator, notice_text: str, finished: bool = False) -> dict:
        done, total = judging.progress(annotator.name)
        skipped = judging.skipped_left(annotator.name)
        if not skipped:
            text = f"## All done\nYou judged all {total} items. Thank you!"
        elif finished:
            text = (f"## Finished\nYou judged {done} of {total} items; the {skipped} you skipped stay "
                    "unjudged. Thank you! (You can still revisit them.)")
        else:
            text = (f"## Only skipped items are left\nYou judged {done} of {total} items; the {skipped} "
                    "remaining were all skipped. Revisit them, or finish here.")
        return {ui.status: status_line(annotator), ui.notice: notice_text,
                ui.back_btn: gr.update(interactive=done > 0), ui.judge_box: gr.update(visible=False),
                ui.end_box: gr.update(visible=True), ui.end_md: text, ui.revisit_btn: gr.update(visible=bool(skipped)),
                ui.finish_btn: gr.update(visible=bool(skipped) and not finished), ui.handle: ""}

    def current_screen(annotator: Annotator, notice_text: str = "") -> dict:
        task = judging.next_task(annotator.name)
        return task_screen(annotator, task, notice_text) if task else end_screen(annotator, notice_text)

    def signed_in(annotator: Annotator | None, token_value: str, message: str) -> dict:
        if annotator is None:
            return {ui.who: None, ui.saved_token: SIGNED_OUT, ui.signin_box: gr.update(visible=True),
                    ui.main_box: gr.update(visible=False), ui.signin_msg: message, ui.prompt_md: "",
                    ui.answer_a: "", ui.answer_b: "", ui.handle: ""}
        return {ui.who: annotator, ui.saved_token: token_value, ui.signin_box: gr.update(visible=False),
                ui.main_box: gr.update(visible=True), ui.signin_msg: "", **current_screen(annotator)}

    def sign_in(token_value: str):
        annotator = judging.sign_in(token_value)
        return signed_in(annotator, (token_value or "").strip(), "" if annotator else "Unknown token.")

    def resume(stored_token: str):
        if not stored_token:  # nothing to resume: change nothing, so a sign-in that beat this load stands
            return {ui.who: gr.skip()}
        return signed_in(judging.sign_in(stored_token), stored_token, "")

    def sign_out():
        return signed_in(None, "", "Signed out.")

    def require(annotator: Annotator | None) -> Annotator:
        if annotator is None:
            raise gr.Error("Sign in first.", print_exception=False)
        return annotator

    def make_vote(choice: str):
        def vote(handle_value, a_value, b_value, comment_value, a_lang, b_lang, annotator: Annotator | None):
            annotator = require(annotator)
            try:
                recorded = judging.vote(annotator.name, handle_value, choice,
                                        None if a_value is None else a_value == VERDICTS[0],
                                        None if b_value is None else b_value == VERDICTS[0], comment_value,
                                        a_lang, b_lang)
            except FireflyError as e:  # shown in one line by the buttons; the page stays as it is
                return {ui.vote_msg: f"⚠ {safe_markdown(str(e))}"}
            return current_screen(annotator, f"✓ Previous item saved: {judging.outcome_text(recorded)}.")
        vote.__name__ = f"vote_{choice.lower()}"
        return vote

    def skip(handle_value, annotator: Annotator | None):
        annotator = require(annotator)
        try:
            skipped = judging.skip(annotator.name, handle_value)
        except FireflyError as e:
            return {ui.vote_msg: f"⚠ {safe_markdown(str(e))}"}
        return current_screen(annotator, "Skipped: it comes back at the end." if skipped
                              else "Your vote on that item is kept as it was.")

    def back(annotator: Annotator | None):
        annotator = require(annotator)
        last = judging.last_vote(annotator.name)
        if last is None:
            return {ui.notice: "No vote to change yet."}
        task, vote = last
        return task_screen(annotator, task, "", vote)

    def revisit(annotator: Annotator | None):
        annotator = require(annotator)
        judging.revisit_skipped(annotator.name)
        return current_screen(annotator, "The skipped items are back.")

    def finish(annotator: Annotator | None):
        return end_screen(require(annotator), "", finished=True)

    ui.signin_btn.click(sign_in, [ui.token], screen, api_name="sign_in")
    ui.token.submit(sign_in, [ui.token], screen, api_visibility="private")
    demo.load(resume, [ui.saved_token], screen, api_visibility="private")
    ui.signout_btn.click(sign_out, None, screen, api_name="sign_out")
    for button, choice in ((ui.vote_a, "A"), (ui.vote_tie, "tie"), (ui.vote_b, "B")):
        button.click(make_vote(choice), [ui.handle, ui.correct_a, ui.correct_b, ui.comment, ui.lang_a, ui.lang_b,
                                         ui.who], screen, api_name=f"vote_{choice.lower()}", concurrency_limit=None)
    ui.skip_btn.click(skip, [ui.handle, ui.who], screen, api_name="skip", concurrency_limit=None)
    ui.back_btn.click(back, [ui.who], screen, api_name="back")
    ui.revisit_btn.click(revisit, [ui.who], screen, api_name="revisit_skipped")
    ui.finish_btn.click(finish, [ui.who], screen, api_name="finish")


def build_app(judging: Judging) -> gr.Blocks:
    with gr.Blocks(title="Firefly judge", analytics_enabled=False) as demo:
        wire_judging(demo, judge_layout(judging), judging)
    with demo.route("Results", RESULTS_PATH, show_in_navbar=False):
        build_results_page(demo, judging)
    return demo


def build_results_page(demo: gr.Blocks, judging: Judging) -> None:
    """The admin view: the live tally (model names, counts) and each annotator's progress."""
    admin = gr.State(None)  # Annotator (an admin) | None, server side
    saved_token = gr.BrowserState("", storage_key="firefly_judge_admin_token", secret=judging.store.browser_key)
    timer = gr.Timer(10, active=False)
    signin_box, token, signin_btn, signin_msg = signin_column(
        "## Firefly judge: results\nSign in with an admin token.", "Admin token", "admin-")
    with gr.Column(visible=False) as results_box:
        results_md = gr.Markdown(elem_id="results")
        refresh_btn = gr.Button("Refresh", size="sm", elem_id="refresh")
    outputs = [admin, saved_token, signin_box, results_box, signin_msg, results_md, timer]

    def signed_in(annotator, token_value: str, message: str) -> dict:
        if annotator is None or not annotator.is_admin:
            return {admin: None, saved_token: SIGNED_OUT, signin_box: gr.update(visible=True),
                    results_box: gr.update(visible=False), signin_msg: message, results_md: "",
                    timer: gr.Timer(active=False)}
        return {admin: annotator, saved_token: token_value, signin_box: gr.update(visible=False),
                results_box: gr.update(visible=True), signin_msg: "", results_md: judging.results_markdown(),
                timer: gr.Timer(active=True)}

    def sign_in(token_value: str):
        annotator = judging.sign_in(token_value)
        message = ("Unknown token." if annotator is None else
                   "" if annotator.is_admin else "The results need an admin token.")
        return signed_in(annotator, (token_value or "").strip(), message)

    def resume(stored_token: str):
        return signed_in(judging.sign_in(stored_token), stored_token, "") if stored_token else {admin: gr.skip()}

    def results(annotator):
        if annotator is None or not annotator.is_admin:
            raise gr.Error("The results need an admin token.", print_exception=False)
        return judging.results_markdown()

    signin_btn.click(sign_in, [token], outputs, api_name="admin_sign_in")
    token.submit(sign_in, [token], outputs, api_visibility="private")
    demo.load(resume, [saved_token], outputs, api_visibility="private")
    refresh_btn.click(results, [admin], [results_md], api_name="results")
    timer.tick(results, [admin], [results_md], api_visibility="private", show_progress="hidden")


def launch(judging: Judging, host: str = "127.0.0.1", port: int = 7860) -> None:
    """Serve until interrupted (Ctrl-C, or SIGTERM: see `serve`)."""
    demo = build_app(judging)
    demo.queue(default_concurrency_limit=8)
    demo.launch(server_name=host, server_port=port, ssr_mode=False, head=SHORTCUTS_JS, css=CSS, show_error=True,
                footer_links=[], quiet=False)
