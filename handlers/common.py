"""Input readers every journey needs: phone numbers (mainland mobile or landline with area
code) and their masked display, with a hint for each way a number can be wrong. Mobiles are
read by `rules.inputs.mobile` and masked by `rules.masks.phone`; this adds landlines
and the hints, so a number is read and shown the same way in every journey.
"""

from __future__ import annotations

import re

from dialogue.flows import Invalid
from rules import masks
from rules.inputs import mobile, normalize

# Area codes: 010, 02X, or 03XX-09XX; local numbers have 7-8 digits and start with 2-9.
LANDLINE = re.compile(r"^(010|02[0-9]|0[3-9][0-9]{2})([2-9][0-9]{6,7})$")
_SPOKEN = str.maketrans("零〇幺一二两三四五六七八九", "0011223456789")
PHONE_HINT = "请输入11位手机号（如 13800138000），或带区号的座机（如 0536-8888000）。"


def parse_phone(text: str, *, mobile_only: bool = False) -> str:
    """A clean phone number: "13800138000" or "0536-8888000"; raises Invalid with a hint.

    Takes full-width digits, spoken digits (幺三八…), spaces, dashes, brackets and a
    leading +86 / 86.
    """
    number = mobile(text)
    if number:
        return number
    t = re.sub(r"[\s\-－—()（）.·]", "", normalize(text).translate(_SPOKEN))
    if not (t.isascii() and t.isdigit()):
        raise Invalid("电话号码只能是数字。" + PHONE_HINT)
    m = LANDLINE.match(t)
    if m and not mobile_only:
        return f"{m.group(1)}-{m.group(2)}"
    if mobile_only:
        raise Invalid("请输入11位手机号，例如 13800138000。")
    if len(t) in (7, 8) and t[0] in "23456789":
        raise Invalid("座机号码请加上区号，例如 0536-8888000。")
    if t.startswith("1"):
        raise Invalid(f"手机号应为11位、以13-19开头，您输入了{len(t)}位。" if len(t) != 11
                      else "这个号码不像手机号，请检查后再输入。")
    raise Invalid(PHONE_HINT)


def mask_phone(phone: str | None) -> str:
    """138****1234 for mobiles, 0536-***8000 for landlines."""
    if not phone:
        return ""
    if "-" in phone:
        area, local = phone.split("-", 1)
        return f"{area}-{'*' * (len(local) - 4)}{local[-4:]}"
    return masks.phone(phone)


def mask_address(address: str | None, keep: int = 6) -> str:
    """The street part only: "奎文区东风东街***" (house and room numbers hidden)."""
    if not address:
        return ""
    m = re.search(r"\d", address)
    cut = min(keep, m.start()) if m else keep
    cut = max(cut, 2) if len(address) > 2 else len(address)
    return address[:cut] + "***"


def page_link(ctx, path: str, label: str) -> str:
    """A line ending a long list with a link to its web page ("" when the pages' address is
    not configured). WeChat shows <a href> in a text message as a link; the page then knows
    the reader by OAuth."""
    base = (ctx.settings.pages_url or "").rstrip("/")
    if not base:
        return ""
    return f'\n<a href="{base}{path}">{label}</a>'
