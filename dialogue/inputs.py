"""Forgiving readers of what people type: NFKC, circled and Chinese numbers, yes/no words.

Elderly users type full-width digits, ①, "两个", "好的。", or speak and let WeChat
recognise it; every reader here takes that in and returns a clean value or None.
"""

from __future__ import annotations

import re
import unicodedata

# Punctuation and spaces people wrap answers in: "1。", "「确认」", " 是的！ "
_WRAP = " \t\r\n\u3000。．.，,！!？?；;：:、~～…\"'“”‘’「」『』()（）[]【】<>《》"

_CN_DIGITS = {"零": 0, "〇": 0, "一": 1, "壹": 1, "二": 2, "两": 2, "贰": 2, "三": 3, "叁": 3,
              "四": 4, "肆": 4, "五": 5, "伍": 5, "六": 6, "陆": 6, "七": 7, "柒": 7, "八": 8,
              "捌": 8, "九": 9, "玖": 9}
_CN_UNITS = {"十": 10, "拾": 10, "百": 100, "佰": 100, "千": 1000, "仟": 1000}


def normalize(text: str) -> str:
    """NFKC (full-width → ASCII, ① → 1), collapse spaces, strip wrapping punctuation."""
    text = unicodedata.normalize("NFKC", text or "")
    text = re.sub(r"\s+", " ", text)
    return text.strip(_WRAP)


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
    """A whole number typed with digits or Chinese numerals ("12", "１２", "十二", "12个")."""
    t = normalize(text)
    t = re.sub(r"(个|号|项|条|位|人|次|分钟|小时)$", "", t)
    if re.fullmatch(r"\d{1,9}", t):
        return int(t)
    if t.startswith("第"):
        t = t[1:]
        if re.fullmatch(r"\d{1,9}", t):
            return int(t)
    return chinese_number(t)


# Negatives first: "不好" is no, "不是" is no; A-不-A questions ("是不是") are unclear.
_NO = ("不是", "不对", "不行", "不要", "不用", "不好", "不同意", "不确认", "不需要", "不", "否",
       "没有", "没", "错", "别", "算了", "no", "n")
_YES = ("是的", "是", "对", "对的", "好", "好的", "可以", "行", "确认", "确定", "同意", "要", "需要",
        "嗯", "嗯嗯", "ok", "yes", "y", "没问题", "提交")
_UNCLEAR = re.compile(r"(.)不\1")  # 是不是, 好不好, 要不要


def yes_no(text: str) -> bool | None:
    """True for yes, False for no, None when unclear."""
    t = normalize(text).lower()
    if not t or _UNCLEAR.search(t):
        return None
    for word in _NO:
        if t == word or (len(word) > 1 and t.startswith(word)):
            return False
    for word in _YES:
        if t == word or (len(word) > 1 and t.startswith(word) and len(t) <= len(word) + 2):
            return True
    return None
