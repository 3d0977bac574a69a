"""Forgiving readers of what people type: NFKC, circled and Chinese numbers, yes/no words.

Elderly users type full-width digits, ①, "两个", "好的。", or speak and let WeChat
recognise it; every reader here takes that in and returns a clean value or None.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

# Punctuation and spaces people wrap answers in: "1。", "「确认」", " 是的！ "
_WRAP = " \t\r\n\u3000。．.，,！!？?；;：:、~～…\"'“”‘’「」『』()（）[]【】<>《》"

_KEYCAP = re.compile("[\ufe0f\u20e3\u200b-\u200d\ufeff]")  # keycap/variation marks, zero-width

_CN_DIGITS = {"幺": 1, "零": 0, "〇": 0, "一": 1, "壹": 1, "二": 2, "两": 2, "贰": 2, "三": 3, "叁": 3,
              "四": 4, "肆": 4, "五": 5, "伍": 5, "六": 6, "陆": 6, "七": 7, "柒": 7, "八": 8,
              "捌": 8, "九": 9, "玖": 9}
_CN_UNITS = {"十": 10, "拾": 10, "百": 100, "佰": 100, "千": 1000, "仟": 1000}


@lru_cache(maxsize=4096)
def normalize(text: str) -> str:
    """NFKC (full-width → ASCII, ① → 1), drop keycap marks (1️⃣ → 1), collapse spaces,
    strip wrapping punctuation. Remembered: one turn reads the same message several times
    (global words, yes/no, a number, the step's own parser)."""
    text = unicodedata.normalize("NFKC", text or "")
    text = _KEYCAP.sub("", text)
    text = re.sub(r"\s+", " ", text)
    return text.strip(_WRAP)


def as_written(text: str) -> str:
    """What someone wrote, to keep and show: only the white space around it is trimmed.
    Matching reads `normalize(text)`; a description, an address or a reason is stored as
    typed (full-width punctuation, brackets and all)."""
    return (text or "").strip()


def chinese_number(text: str) -> int | None:
    """一 → 1, 十二 → 12, 两百零五 → 205, 三十 → 30; None if it is not a number."""
    if not text or any(ch not in _CN_DIGITS and ch not in _CN_UNITS for ch in text):
        return None
    total, digit, seen = 0, None, False
    for ch in text:
        if ch in _CN_DIGITS:
            if digit is not None and not (digit == 0 or _CN_DIGITS[ch] == 0):
                return None  # "一二" is not a number
            digit = _CN_DIGITS[ch]
            seen = True
        else:
            unit = _CN_UNITS[ch]
            total += (1 if digit is None else digit) * unit
            digit = None
            seen = True
    if digit:
        total += digit
    return total if seen else None


def parse_int(text: str) -> int | None:
    """A whole number typed with digits or Chinese numerals ("12", "１２", "十二", "第3个",
    "选二")."""
    t = normalize(text)
    t = re.sub(r"^(我选|选择|选|要|第)+", "", t)
    t = re.sub(r"(个|号|项|条|位|人|次|分钟|小时|个人)$", "", t).strip()
    if re.fullmatch(r"\d{1,9}", t):
        return int(t)
    return chinese_number(t)


# Negatives first: "不好", "不是", "没有" are no; A-不-A questions ("是不是") and questions
# ending in 吗 are unclear; a few negative-looking phrases mean yes ("没问题", "不错").
_YES_PHRASES = ("没问题", "没错", "不错", "没毛病")
_NEG_START = ("不", "没", "别", "否", "未", "无需", "甭")
_NO = ("错", "算了", "no", "n", "nope")
_YES = ("是的", "是", "对", "对的", "好", "好的", "可以", "行", "确认", "确定", "同意", "要", "需要",
        "嗯", "嗯嗯", "ok", "okay", "yes", "y", "提交", "中")
_PARTICLES = set("的啊呀嘞哇吧呢哦嗯了滴")
_UNCLEAR = re.compile(r"(.)不\1")  # 是不是, 好不好, 要不要


def yes_no(text: str) -> bool | None:
    """True for yes, False for no, None when unclear."""
    t = normalize(text).lower()
    if not t or _UNCLEAR.search(t) or t.endswith(("吗", "么", "嘛")):
        return None
    for phrase in _YES_PHRASES:
        if t.startswith(phrase) and len(t) <= len(phrase) + 2:
            return True
    if t.startswith(_NEG_START) or t in _NO or t.startswith("算了"):
        return False
    for word in _YES:
        if t == word or (len(word) > 1 and t.startswith(word) and len(t) <= len(word) + 2):
            return True
    # 好啊, 是呀, 行吧, 对呢: a one-character yes followed only by particles.
    if t[0] in ("好", "是", "对", "行", "嗯", "要") and set(t[1:]) <= _PARTICLES:
        return True
    return None


def mobile(text: str) -> str | None:
    """A mainland mobile number ("138 0013 8000", "+86-13800138000", "幺三八…") or None."""
    t = normalize(text)
    t = "".join(str(_CN_DIGITS[ch]) if ch in _CN_DIGITS else ch for ch in t)
    t = re.sub(r"[\s\-()（）]", "", t)
    t = re.sub(r"^(\+?86)(?=1\d{10}$)", "", t)
    return t if re.fullmatch(r"1[3-9]\d{9}", t) else None


def id_number(text: str, today=None) -> str | None:
    """An 18-character resident ID number (MOD 11-2 check digit, real birth date not in
    the future, known province), upper-case without spaces; None otherwise. The rules live
    in `rules.pii` (which also encrypts and masks them); this is the form-step reader."""
    from datetime import date

    from rules.pii import IdNumberError, parse_id_number

    try:
        return parse_id_number(text, today or date.today()).number
    except IdNumberError:
        return None
