"""safe_markdown: HTML shown as text, code blocks and inline code untouched."""
from human_eval_app.render import safe_markdown


def test_tags_become_text():
    assert safe_markdown("<script>window.pwned=1</script>") == "&lt;script>window.pwned=1&lt;/script>"
    assert safe_markdown('x <img src=x onerror="window.pwned=1"> y') == 'x &lt;img src=x onerror="window.pwned=1"> y'
    assert safe_markdown("<https://example.com>") == "&lt;https://example.com>"


def test_entities_shown_literally():
    assert safe_markdown("a &amp; b & c") == "a &amp;amp; b &amp; c"


def test_inline_code_left_alone():
    assert safe_markdown("use `<div>` or ``a ` <b>`` here <i>") == "use `<div>` or ``a ` <b>`` here &lt;i>"
    assert safe_markdown("unmatched ` <b>") == "unmatched ` &lt;b>"


def test_fenced_code_left_alone():
    text = "说明 <b>\n\n```html\n<script>x()</script>\n```\n\n~~~\n<i>\n~~~\nend <u>"
    assert safe_markdown(text) == "说明 &lt;b>\n\n```html\n<script>x()</script>\n```\n\n~~~\n<i>\n~~~\nend &lt;u>"


def test_fence_closes_only_on_matching_fence():
    text = "````\n```\n<b>\n````\n<i>"
    assert safe_markdown(text) == "````\n```\n<b>\n````\n&lt;i>"


def test_unclosed_fence_is_closed():
    assert safe_markdown("a\n```python\nprint('<b>')") == "a\n```python\nprint('<b>')\n```"


def test_markdown_kept():
    text = "# 标题\n\n- 一\n- 二\n\n**粗体** > 引用 1 < 2"
    assert safe_markdown(text) == "# 标题\n\n- 一\n- 二\n\n**粗体** > 引用 1 &lt; 2"
    assert safe_markdown("a\r\nb") == "a\nb"


def test_empty_answer_says_so():
    from human_eval_app.render import EMPTY_ANSWER, answer_markdown

    assert answer_markdown("") == answer_markdown("  \n ") == EMPTY_ANSWER == "*(empty answer)*"
    assert answer_markdown("第一步\n第二步 <b>") == "第一步\n第二步 &lt;b>"  # single newlines kept for line_breaks
