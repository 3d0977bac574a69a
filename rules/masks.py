"""Masking personal data for display: summaries, lists and confirmations never show a full
phone or ID number. Use as a step's `show=`: `Step("phone", ..., show=masks.phone)`.
"""

from __future__ import annotations

import re

from rules.inputs import normalize
from rules.pii import mask_id_number


def phone(value) -> str:
    """13812341234 → 138****1234; short numbers keep only their last 2 digits visible."""
    s = normalize(str(value or "")).replace(" ", "").replace("-", "")
    if len(s) >= 11:
        return s[:3] + "****" + s[-4:]
    if len(s) > 4:
        return "*" * (len(s) - 2) + s[-2:]
    return "*" * len(s)


def id_number(value) -> str:
    """11010519491231002X → 1101**********002X (the rule of `rules.pii`, used everywhere)."""
    return mask_id_number(str(value or ""))


def name(value) -> str:
    """张三丰 → 张**; a one-character name stays (it says nothing alone)."""
    s = str(value or "").strip()
    return s[:1] + "*" * (len(s) - 1) if len(s) > 1 else s


_PHONE_IN_TEXT = re.compile(r"(?<!\d)1[3-9]\d{9}(?!\d)")
_ID_IN_TEXT = re.compile(r"(?<![\dXx])\d{17}[\dXx](?![\dXx])|(?<!\d)\d{15}(?!\d)")


def in_text(value) -> str:
    """Any mobile number or ID number inside free text masked (for exports of text that
    should hold none, such as the audit log, where someone may have typed one anyway)."""
    s = str(value or "")
    s = _ID_IN_TEXT.sub(lambda m: mask_id_number(m.group(0)) if len(m.group(0)) == 18 else "*" * 15, s)
    return _PHONE_IN_TEXT.sub(lambda m: phone(m.group(0)), s)
