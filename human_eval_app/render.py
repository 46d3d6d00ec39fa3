"""Model text made safe to show as markdown: code blocks stay code, any HTML is shown as text, never run.

The browser renders the result with `gr.Markdown(sanitize_html=True)`; this module is the first line of
defence and does not rely on that sanitizer: outside code, `&` and `<` are written as entities, so no tag
(`<script>`, `<img onerror=...>`, `<iframe>`, an autolink) can be formed from an answer, and the reader sees
exactly the characters the model wrote. Fenced code blocks and inline code spans are left as they are,
because markdown shows their content literally anyway.
"""
from __future__ import annotations

import re

_FENCE = re.compile(r"^( {0,3})(`{3,}|~{3,})(.*)$")
_BACKTICKS = re.compile(r"`+")


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;")


def _escape_outside_code_spans(text: str) -> str:
    """Escape text while leaving inline code spans (a run of n backticks closed by a run of exactly n)."""
    out, pos = [], 0
    runs = list(_BACKTICKS.finditer(text))
    i = 0
    while i < len(runs):
        opening = runs[i]
        closing = next((j for j in range(i + 1, len(runs)) if len(runs[j].group()) == len(opening.group())), None)
        if closing is None:
            i += 1
            continue
        out.append(_escape(text[pos:opening.start()]))
        out.append(text[opening.start():runs[closing].end()])
        pos = runs[closing].end()
        i = closing + 1
    out.append(_escape(text[pos:]))
    return "".join(out)


def safe_markdown(text: str) -> str:
    """Markdown source to show `text` (a prompt, a model's answer, a reference) with all HTML inert."""
    out, prose = [], []
    fence = None  # (char, length) of the open code fence
    for line in text.replace("\r\n", "\n").split("\n"):
        m = _FENCE.match(line)
        if fence is None:
            if m and not (m.group(2)[0] == "`" and "`" in m.group(3)):
                out.append(_escape_outside_code_spans("\n".join(prose)) if prose else None)
                prose = []
                fence = (m.group(2)[0], len(m.group(2)))
                out.append(line)
            else:
                prose.append(line)
        else:
            out.append(line)
            if m and m.group(2)[0] == fence[0] and len(m.group(2)) >= fence[1] and not m.group(3).strip():
                fence = None
    if prose:
        out.append(_escape_outside_code_spans("\n".join(prose)))
    if fence is not None:  # an unclosed fence: close it so the rest of the page is not swallowed
        out.append(fence[0] * fence[1])
    return "\n".join(part for part in out if part is not None)


EMPTY_ANSWER = "*(empty answer)*"


def answer_markdown(text: str) -> str:
    """`safe_markdown` of a model's answer; an empty (or blank) answer is shown as "(empty answer)"."""
    return safe_markdown(text) if text.strip() else EMPTY_ANSWER
