"""The judging page (Gradio Blocks): layout and wiring only; every decision is in `session.Judging`.

Who is signed in lives in a `gr.State` (kept on the server); the browser gets the prompt, the answers as
A and B and an opaque handle, never a model name. The token is remembered in the browser's localStorage
(`gr.BrowserState`) so a reload signs in again and resumes where the annotator left off.
"""
from __future__ import annotations

import gradio as gr

from firefly_train.errors import FireflyError
from human_eval_app.render import safe_markdown
from human_eval_app.session import Annotator, Judging, View

VERDICTS = ["correct", "wrong"]
# What the browser remembers after signing out (gr.BrowserState does not store empty values).
SIGNED_OUT = "signed-out"
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
  if (button && !button.disabled) { e.preventDefault(); button.click(); }
});
</script>
"""


def _verdict(value: bool | None) -> str | None:
    return None if value is None else VERDICTS[0] if value else VERDICTS[1]


def build_app(judging: Judging) -> gr.Blocks:
    with gr.Blocks(title="Firefly judge", analytics_enabled=False) as demo:
        who = gr.State(None)  # Annotator | None, server side
        saved_token = gr.BrowserState("", storage_key="firefly_judge_token")
        timer = gr.Timer(10, active=False)  # refreshes the admin's results view

        with gr.Column(visible=True) as signin_box:
            gr.Markdown("## Firefly judge\nSign in with the token your coordinator gave you.")
            token = gr.Textbox(label="Token", type="password", elem_id="token")
            signin_btn = gr.Button("Sign in", variant="primary", elem_id="sign-in")
            signin_msg = gr.Markdown(elem_id="sign-in-msg")

        with gr.Column(visible=False) as main_box:
            with gr.Row():
                status = gr.Markdown(elem_id="status")
                signout_btn = gr.Button("Sign out", size="sm", scale=0, elem_id="sign-out")
            with gr.Tabs():
                with gr.Tab("Judge", id="judge"):
                    task_md = gr.Markdown(elem_id="task")
                    prompt_md = gr.Markdown(elem_id="prompt", sanitize_html=True)
                    reference_md = gr.Markdown(visible=False, elem_id="reference", sanitize_html=True)
                    with gr.Row(equal_height=False):
                        with gr.Column():
                            gr.Markdown("### A")
                            flag_a = gr.Markdown(elem_id="flag-a")
                            answer_a = gr.Markdown(elem_id="answer-a", sanitize_html=True)
                            correct_a = gr.Radio(VERDICTS, label="A correct?", visible=False, elem_id="a-correct")
                        with gr.Column():
                            gr.Markdown("### B")
                            flag_b = gr.Markdown(elem_id="flag-b")
                            answer_b = gr.Markdown(elem_id="answer-b", sanitize_html=True)
                            correct_b = gr.Radio(VERDICTS, label="B correct?", visible=False, elem_id="b-correct")
                    comment = gr.Textbox(label="Comment (optional)", lines=1, elem_id="comment")
                    with gr.Row():
                        vote_a = gr.Button("A better [1]", variant="primary", elem_id="vote-a")
                        vote_tie = gr.Button("Tie [2]", elem_id="vote-tie")
                        vote_b = gr.Button("B better [3]", variant="primary", elem_id="vote-b")
                        skip_btn = gr.Button("Skip [s]", variant="secondary", elem_id="skip")
                    ack = gr.Markdown(elem_id="ack")
                    handle = gr.Textbox(visible="hidden", elem_id="handle")
                with gr.Tab("Results", id="results", visible=False) as results_tab:
                    results_md = gr.Markdown(elem_id="results")
                    refresh_btn = gr.Button("Refresh", size="sm", elem_id="refresh")

        task_outputs = [status, task_md, prompt_md, reference_md, flag_a, answer_a, correct_a, flag_b, answer_b,
                        correct_b, comment, handle, vote_a, vote_tie, vote_b, skip_btn]

        def show(annotator: Annotator) -> list:
            task = judging.next_task(annotator.name)
            if task is None:
                done, total = judging.progress(annotator.name)
                return [f"**{safe_markdown(annotator.name)}** · {done} / {total}", "**All done.** Thank you!", "",
                        gr.update(value="", visible=False), "", "", gr.update(value=None, visible=False), "", "",
                        gr.update(value=None, visible=False), "", ""] + [gr.update(interactive=False)] * 4
            view: View = judging.view(annotator.name, task)
            flag = "⚠ Mainly English for a Chinese prompt: counts as wrong."
            objective_note = " · objective: correctness decides, both right or both wrong is a tie" if view.objective else ""
            return [
                f"**{safe_markdown(annotator.name)}** · {view.progress}",
                f"Task: `{view.task}`{objective_note}",
                safe_markdown(view.prompt),
                gr.update(value=f"**Reference:**\n\n{safe_markdown(view.reference or '(none: judge by the prompt)')}",
                          visible=view.objective),
                flag if view.a_wrong_language else "",
                safe_markdown(view.answer_a),
                gr.update(value=_verdict(view.a_correct), visible=view.objective),
                flag if view.b_wrong_language else "",
                safe_markdown(view.answer_b),
                gr.update(value=_verdict(view.b_correct), visible=view.objective),
                "", view.handle,
            ] + [gr.update(interactive=True)] * 4

        def signed_in_outputs(annotator: Annotator | None, token_value: str, message: str) -> list:
            if annotator is None:
                hidden = ["", "", "", gr.update(value="", visible=False), "", "", gr.update(value=None, visible=False),
                          "", "", gr.update(value=None, visible=False), "", ""] + [gr.update()] * 4
                return [None, SIGNED_OUT, gr.update(visible=True), gr.update(visible=False), gr.update(visible=False),
                        gr.Timer(active=False), message, "", ""] + hidden
            return [annotator, token_value, gr.update(visible=False), gr.update(visible=True),
                    gr.update(visible=annotator.is_admin), gr.Timer(active=annotator.is_admin), "",
                    judging.results_markdown() if annotator.is_admin else "", ""] + show(annotator)

        signin_outputs = [who, saved_token, signin_box, main_box, results_tab, timer, signin_msg, results_md,
                          ack] + task_outputs

        def sign_in(token_value: str):
            annotator = judging.sign_in(token_value)
            return signed_in_outputs(annotator, (token_value or "").strip(), "" if annotator else "Unknown token.")

        def resume(stored_token: str):
            if not stored_token:  # nothing to resume: change nothing, so a sign-in that beat this load stands
                return [gr.skip()] * len(signin_outputs)
            return signed_in_outputs(judging.sign_in(stored_token), stored_token, "")

        def sign_out():
            return signed_in_outputs(None, "", "Signed out.")

        def make_vote(choice: str):
            def vote(handle_value, a_value, b_value, comment_value, annotator: Annotator | None):
                if annotator is None:
                    raise gr.Error("Sign in first.", print_exception=False)
                try:
                    recorded = judging.vote(annotator.name, handle_value, choice,
                                            None if a_value is None else a_value == VERDICTS[0],
                                            None if b_value is None else b_value == VERDICTS[0], comment_value)
                except FireflyError as e:
                    raise gr.Error(str(e), print_exception=False) from None
                return [f"Saved: {judging.outcome_text(recorded)}."] + show(annotator)
            vote.__name__ = f"vote_{choice.lower()}"
            return vote

        def skip(handle_value, annotator: Annotator | None):
            if annotator is None:
                raise gr.Error("Sign in first.", print_exception=False)
            try:
                judging.skip(annotator.name, handle_value)
            except FireflyError as e:
                raise gr.Error(str(e), print_exception=False) from None
            return ["Skipped: it comes back at the end."] + show(annotator)

        def results(annotator: Annotator | None):
            if annotator is None or not annotator.is_admin:
                raise gr.Error("The results need an admin token.", print_exception=False)
            return judging.results_markdown()

        signin_btn.click(sign_in, [token], signin_outputs, api_name="sign_in")
        token.submit(sign_in, [token], signin_outputs, api_visibility="private")
        demo.load(resume, [saved_token], signin_outputs, api_visibility="private")
        signout_btn.click(sign_out, None, signin_outputs, api_name="sign_out")
        for button, choice in ((vote_a, "A"), (vote_tie, "tie"), (vote_b, "B")):
            button.click(make_vote(choice), [handle, correct_a, correct_b, comment, who], [ack] + task_outputs,
                         api_name=f"vote_{choice.lower()}", concurrency_limit=None)
        skip_btn.click(skip, [handle, who], [ack] + task_outputs, api_name="skip", concurrency_limit=None)
        refresh_btn.click(results, [who], [results_md], api_name="results")
        timer.tick(results, [who], [results_md], api_visibility="private", show_progress="hidden")
    return demo


def launch(judging: Judging, host: str = "127.0.0.1", port: int = 7860) -> None:
    """Serve until interrupted."""
    demo = build_app(judging)
    demo.queue(default_concurrency_limit=8)
    demo.launch(server_name=host, server_port=port, ssr_mode=False, head=SHORTCUTS_JS, show_error=True,
                footer_links=[], quiet=False)
