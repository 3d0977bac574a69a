"""Masking personal data for display: summaries, lists and confirmations never show a full
phone or ID number. Use as a step's `show=`: `Step("phone", ..., show=masks.phone)`.
"""

from __future__ import annotations

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
