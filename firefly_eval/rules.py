"""The seed's judging rules, shared by the judging app and the tally.

* A Chinese prompt answered mainly in English counts as a wrong answer (code is ignored; a prompt that
  asks for English, such as a translation into English, is exempt).
* On objective items, both answers right or both wrong is a tie; if only one is right, that side wins,
  whatever the annotator preferred.
"""
from __future__ import annotations

import math
import re
import unicodedata
from fractions import Fraction

_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002ebef]")
_LATIN_WORD = re.compile(r"[A-Za-z]+(?:'[A-Za-z]+)?")
_CODE_BLOCK = re.compile(r"```.*?(?:```|\Z)|~~~.*?(?:~~~|\Z)", re.S)
_INLINE_CODE = re.compile(r"`[^`\n]*`")
_ASKS_ENGLISH = re.compile(
    r"(译成|译为|翻译成|翻译为|转成|转换成|转换为|改写成|改写为|写成|写一|用|以|使用)\s*(英文|英语|English)"
    r"|(英文|英语)(翻译|回答|回复|写|作答|表达|版本|句子|单词)(?!\s*[成为]\s*(中文|汉语))"
    r"|\binto English\b|\bin English\b", re.I)
# Addresses are not English prose: an answer listing e-mails or URLs is not "answered in English".
_ADDRESS = re.compile(r"https?://\S+|www\.\S+|[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
# Fewer Latin words than this is not "an English answer" ("B", "42", "Python").
MIN_ENGLISH_WORDS = 3
_NUMBER = re.compile(r"(?<![A-Za-z0-9_.])[-+−]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:\s*/\s*\d+(?:\.\d+)?)?%?")
_EXPLICIT_CHOICE = re.compile(
    r"(?:答案|选项|正确选项|应选|应该选|选择|故选|所以选|选|answer(?: is)?|option)\s*(?:是|为|应为|:|：)?\s*"
    r"[（(\[【]?\s*([A-Za-z])(?![A-Za-z])", re.I)
_LEADING_CHOICE = re.compile(r"^[（(\[【]?\s*([A-Z])\s*(?:[.．、:：)）\]】]|$|\s)")
_BARE_CHOICE = re.compile(r"(?<![A-Za-z])([A-H])(?![A-Za-z])")


def strip_code(text: str) -> str:
    """The text without fenced code blocks and inline code."""
    return _INLINE_CODE.sub(" ", _CODE_BLOCK.sub(" ", text))


def _counts(text: str) -> tuple[int, int]:
    text = _ADDRESS.sub(" ", strip_code(text))
    return len(_CJK.findall(text)), len(_LATIN_WORD.findall(text))


def is_chinese_text(s: str) -> bool:
    """Mainly Chinese: at least as many Chinese characters as Latin words (code ignored)."""
    cjk, words = _counts(s)
    return cjk > 0 and cjk >= words


def asks_for_english(prompt: str) -> bool:
    return bool(_ASKS_ENGLISH.search(strip_code(prompt)))


def wrong_language(prompt: str, answer: str) -> bool:
    """A Chinese prompt answered mainly in English (code ignored; prompts asking for English exempt)."""
    if not is_chinese_text(prompt) or asks_for_english(prompt):
        return False
    cjk, words = _counts(answer)
    return words >= MIN_ENGLISH_WORDS and words > cjk


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


def resolve(objective: bool, choice: str, left_correct: bool | None, right_correct: bool | None) -> str:
    """The outcome that counts: on objective items with both sides judged, correctness decides."""
    if choice not in CHOICES:
        raise ValueError(f"choice must be one of {CHOICES}, got {choice!r}")
    if not objective or left_correct is None or right_correct is None:
        return choice
    if left_correct == right_correct:
        return "tie"
    return "left" if left_correct else "right"
