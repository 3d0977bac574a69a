"""Numbers and record ids read from untrusted text, bounded before they are converted.

Everything from outside arrives as text: the webhook's query and XML fields, QR scenes and
menu keys, what people type. Python's `int()` and `float()` on such text can raise (past
4300 digits, on "²" which `str.isdigit()` accepts, on "1.2.3"), accept what no sender
means ("1_000", "٣", " +7 ", "nan") or return values nothing downstream can hold (a
400-digit timestamp overflows float arithmetic, a 20-digit id overflows SQL's INTEGER and
SQLite's 64-bit one). The readers here accept plain ASCII digits of a bounded length and
value only, and return None for anything else, so a caller answers as it does for any
other unreadable value (a 4xx for the envelope, a normal reply for a message).

It sits in store/ because that is the package every other one may import, and because the
widest id it accepts is the store's: every primary key is an INTEGER.
"""

from __future__ import annotations

import re

SQL_INT_MAX = 2**31 - 1  # INTEGER on PostgreSQL: every primary key in store.models
_INTEGER = re.compile(r"-?[0-9]+")
_DECIMAL = re.compile(r"-?[0-9]{1,12}(?:\.[0-9]{1,15})?")  # no exponent, nan, inf or "_"


def bounded_int(text, lo: int, hi: int) -> int | None:
    """The whole number `text` spells in ASCII digits (a "-" in front if `lo` < 0, spaces
    around allowed) when it lies in [lo, hi]; None for anything else, whatever its length."""
    if not isinstance(text, str):
        return None
    t = text.strip()
    # No longer than the widest bound (a leading zero or two to spare), so int() never
    # sees thousands of digits.
    if len(t) > max(len(str(lo)), len(str(hi))) + 2 or not _INTEGER.fullmatch(t):
        return None
    value = int(t)
    return value if lo <= value <= hi else None


def record_id(text) -> int | None:
    """A primary key typed, scanned or sent as text (1 .. SQL INTEGER), else None."""
    return bounded_int(text, 1, SQL_INT_MAX)


def prefixed_id(text, prefix: str) -> int | None:
    """The record id after `prefix` in a QR scene or key ("act:12" → 12), else None."""
    if not isinstance(text, str) or not text.startswith(prefix):
        return None
    return record_id(text[len(prefix):])


def bounded_decimal(text, lo: float, hi: float) -> float | None:
    """A plain decimal ("36.7150", "-0.5", "12") in [lo, hi], else None: no exponent, no
    nan or inf, at most 12 digits before the point and 15 after."""
    if not isinstance(text, str):
        return None
    t = text.strip()
    if not _DECIMAL.fullmatch(t):
        return None
    value = float(t)
    return value if lo <= value <= hi else None
