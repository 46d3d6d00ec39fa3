"""The seed's judging rules, shared by the judging app and the tally.

* A Chinese prompt answered mainly in another script (Latin: English, Spanish, French...; Cyrillic, Greek,
  Hangul) is in the wrong language, and that counts as a wrong answer. Code is ignored; a prompt that asks
  for another language ("翻译成英文", "用法语回答", "in English") is exempt.
* On objective items, both answers right or both wrong is a tie; if only one is right, that side wins,
  whatever the annotator preferred. An answer in the wrong language is a wrong answer.
* On open-ended items, the side in the wrong language loses, whatever the annotator preferred, unless both
  are (then the annotator's choice stands).
"""
from __future__ import annotations

import math
import re
import unicodedata
from fractions import Fraction

_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002ebef]")
# Words of the scripts a Chinese answer should not be written in, by the name shown to annotators.
_FOREIGN_WORDS = {
    "Latin": re.compile(r"[A-Za-z\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u024f]+(?:'[A-Za-z\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u024f]+)?"),
    "Cyrillic": re.compile(r"[\u0400-\u04ff]+"),
    "Greek": re.compile(r"[\u0370-\u03ff]+"),
    "Hangul": re.compile(r"[\uac00-\ud7af\u1100-\u11ff\u3130-\u318f]+"),
}
_CODE_BLOCK = re.compile(r"```.*?(?:```|\Z)|~~~.*?(?:~~~|\Z)", re.S)
_INLINE_CODE = re.compile(r"`[^`\n]*`")
_LANGUAGE = (r"(?:英文|英语|法语|法文|德语|德文|西班牙语|西班牙文|俄语|俄文|日语|日文|韩语|韩文|意大利语|葡萄牙语"
             r"|English|French|Spanish|German|Russian|Japanese|Korean)")
_ASKS_OTHER_LANGUAGE = re.compile(
    r"(?:译成|译为|翻译成|翻译为|转成|转换成|转换为|改写成|改写为|写成|写一|用|以|使用)\s*" + _LANGUAGE
    + r"|" + _LANGUAGE + r"(?:翻译|回答|回复|写|作答|表达|版本|句子|单词)(?!\s*[成为]\s*(?:中文|汉语))"
    + r"|\b(?:into|in) (?:English|French|Spanish|German|Russian|Japanese|Korean)\b", re.I)
# Addresses are not prose: an answer listing e-mails or URLs is not "answered in English".
_ADDRESS = re.compile(r"https?://\S+|www\.\S+|[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
# Fewer foreign words than this is not "an answer in another language" ("B", "42", "Python").
MIN_FOREIGN_WORDS = 3
_NUMBER = re.compile(r"(?<![A-Za-z0-9_.])[-+−]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:\s*/\s*\d+(?:\.\d+)?)?%?")
_EXPLICIT_CHOICE = re.compile(
    r"(?:答案|选项|正确选项|应选|应该选|选择|故选|所以选|选|answer(?: is)?|option)\s*(?:是|为|应为|:|：)?\s*"
    r"[（(\[【]?\s*([A-Za-z])(?![A-Za-z])", re.I)
_LEADING_CHOICE = re.compile(r"^[（(\[【]?\s*([A-Z])\s*(?:[.．、:：)）\]】]|$|\s)")
_BARE_CHOICE = re.compile(r"(?<![A-Za-z])([A-H])(?![A-Za-z])")


def strip_code(text: str) -> str:
    """The text without fenced code blocks and inline code."""
    return _INLINE_CODE.sub(" ", _CODE_BLOCK.sub(" ", text))


def _counts(text: str) -> tuple[int, dict[str, int]]:
    """(Chinese characters, {script: words}) of a text, code and addresses ignored."""
    text = _ADDRESS.sub(" ", strip_code(text))
    return len(_CJK.findall(text)), {name: len(rx.findall(text)) for name, rx in _FOREIGN_WORDS.items()}


def is_chinese_text(s: str) -> bool:
    """Mainly Chinese: at least as many Chinese characters as words in other scripts (code ignored)."""
    cjk, words = _counts(s)
    return cjk > 0 and cjk >= sum(words.values())


def asks_for_other_language(prompt: str) -> bool:
    """The prompt asks for an answer (or a translation) in a language other than Chinese."""
    return bool(_ASKS_OTHER_LANGUAGE.search(strip_code(prompt)))


def language_rule_applies(prompt: str) -> bool:
    """A Chinese prompt that does not ask for another language: its answers must be in Chinese."""
    return is_chinese_text(prompt) and not asks_for_other_language(prompt)


def foreign_script(prompt: str, answer: str) -> str | None:
    """The script ("Latin", "Cyrillic", "Greek", "Hangul") an answer to a Chinese prompt is mainly written
    in, when that is not Chinese; None when the answer is in Chinese or the rule does not apply."""
    if not language_rule_applies(prompt):
        return None
    cjk, words = _counts(answer)
    total = sum(words.values())
    if total < MIN_FOREIGN_WORDS or total <= cjk:
        return None
    return max(words, key=words.get)


def wrong_language(prompt: str, answer: str) -> bool:
    """A Chinese prompt answered mainly in another script (code ignored; prompts asking for it exempt)."""
    return foreign_script(prompt, answer) is not None


def _to_float(token: str) -> float | None:
    token = token.replace(",", "").replace("−", "-").replace(" ", "").rstrip("%")
    try:
        return float(Fraction(token)) if "/" in token else float(token)
    except (ValueError, ZeroDivisionError):
        return None


def last_number(answer: str) -> tuple[float, bool] | None:
    """The last number written in the answer and whether it is a percentage ("25%" -> (25.0, True));
    thousands separators, decimals, fractions and full-width digits are understood."""
    text = unicodedata.normalize("NFKC", answer)
    for token in reversed(_NUMBER.findall(text)):
        value = _to_float(token)
        if value is not None:
            return value, token.endswith("%")
    return None


def chosen_option(answer: str) -> str | None:
    """The option letter an answer picks: an explicit "答案是B"/"Answer: B", a leading "B.", or the one
    standalone capital letter it mentions; None when it can't be told."""
    text = unicodedata.normalize("NFKC", strip_code(answer)).strip()
    explicit = _EXPLICIT_CHOICE.findall(text)
    if explicit:
        return explicit[-1].upper()
    leading = _LEADING_CHOICE.match(text)
    if leading:
        return leading.group(1)
    bare = set(_BARE_CHOICE.findall(text))
    return bare.pop() if len(bare) == 1 else None


def check(checker: dict, answer: str) -> bool:
    """Apply one checker (docs/human_eval.md) to an answer."""
    kind = checker["type"]
    if kind == "number":
        found, want = last_number(answer), float(checker["value"])
        if found is None:
            return False
        got, percent = found
        candidates = (got, got / 100) if percent else (got,)  # "25%" matches 25 and 0.25
        return any(math.isclose(c, want, rel_tol=1e-9, abs_tol=1e-6) for c in candidates)
    if kind == "choice":
        return chosen_option(answer) == checker["value"].upper()
    folded = unicodedata.normalize("NFKC", answer).casefold()
    values = [unicodedata.normalize("NFKC", v).casefold() for v in checker.get("values", ())]
    if kind == "contains_any":
        return any(v in folded for v in values)
    if kind == "contains_all":
        return all(v in folded for v in values)
    if kind == "regex":
        return re.search(checker["pattern"], answer) is not None
    raise ValueError(f"unknown checker type {kind!r}")


def auto_correct(item, answer: str) -> bool | None:
    """The checker's verdict on an answer: False when it is in the wrong language, None without a checker."""
    if item.checker is None:
        return None
    if wrong_language(item.prompt, answer):
        return False
    return check(item.checker, answer)


CHOICES = ("left", "right", "tie")


def resolve(objective: bool, choice: str, left_correct: bool | None, right_correct: bool | None,
            left_wrong_language: bool | None = None, right_wrong_language: bool | None = None) -> str:
    """The outcome that counts ("left", "right" or "tie").

    On objective items with both sides judged, correctness decides (an answer in the wrong language is
    wrong). Otherwise, when exactly one side is in the wrong language, the other side wins; else the
    annotator's choice stands.
    """
    if choice not in CHOICES:
        raise ValueError(f"choice must be one of {CHOICES}, got {choice!r}")
    if objective and left_correct is not None and right_correct is not None:
        left_ok, right_ok = left_correct and not left_wrong_language, right_correct and not right_wrong_language
        if left_ok == right_ok:
            return "tie"
        return "left" if left_ok else "right"
    if bool(left_wrong_language) != bool(right_wrong_language):
        return "right" if left_wrong_language else "left"
    return choice
