"""The custom menu (自定义菜单) at the bottom of the chat, as WeChat's menu/create takes it.

`load()` reads `menus/custom_menu.json` and checks it against WeChat's limits (1-3
buttons, 1-5 sub-buttons each, names ≤ 16 bytes at the top and ≤ 60 bytes below, keys
≤ 128 bytes, URLs ≤ 1024 bytes, known button types) and returns the dict for the API.
Which click keys are live is the registry's business: `click_keys()` lists them for the
check that each one routes to a journey.

`view` buttons that open the account's own web pages are written `"{pages}/records"`:
`load(pages_url=…)` puts the deployment's address in (PUBLIC_URL + /m, from the caller's
configuration); without one those buttons are left out, so the menu stays valid.
"""

from __future__ import annotations

import json
from pathlib import Path

PATH = Path(__file__).with_name("custom_menu.json")
PAGES = "{pages}"
MAX_BUTTONS, MAX_SUB_BUTTONS = 3, 5
MAX_TOP_NAME, MAX_SUB_NAME, MAX_KEY, MAX_URL = 16, 60, 128, 1024
# Types that carry a key and send an event, and the others that need their own field.
KEY_TYPES = {"click", "scancode_push", "scancode_waitmsg", "pic_sysphoto", "pic_photo_or_album",
             "pic_weixin", "location_select"}
URL_TYPES = {"view"}
OTHER_TYPES = {"miniprogram": ("appid", "pagepath", "url"), "article_id": ("article_id",),
               "article_view_limited": ("article_id",)}


class MenuError(ValueError):
    def __init__(self, problems: list[str]):
        super().__init__("; ".join(problems))
        self.problems = problems


def _bytes(s: str) -> int:
    return len(s.encode("utf-8"))


def _check_leaf(b, where: str, problems: list[str]) -> None:
    kind = b.get("type") if isinstance(b, dict) else None
    if kind in KEY_TYPES:
        key = b.get("key")
        if not isinstance(key, str) or not key:
            problems.append(f"{where}: a {kind} button needs a key")
        elif _bytes(key) > MAX_KEY:
            problems.append(f"{where}: key longer than {MAX_KEY} bytes")
    elif kind in URL_TYPES:
        url = b.get("url")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            problems.append(f"{where}: a view button needs an http(s) url")
        elif _bytes(url) > MAX_URL:
            problems.append(f"{where}: url longer than {MAX_URL} bytes")
    elif kind in OTHER_TYPES:
        missing = [f for f in OTHER_TYPES[kind] if not b.get(f)]
        if missing:
            problems.append(f"{where}: a {kind} button needs {', '.join(missing)}")
    else:
        problems.append(f"{where}: unknown button type {kind!r}")


def validate(menu: dict) -> list[str]:
    """Every way `menu` breaks WeChat's rules ([] when it is fine)."""
    problems: list[str] = []
    buttons = menu.get("button") if isinstance(menu, dict) else None
    if not isinstance(buttons, list) or not 1 <= len(buttons) <= MAX_BUTTONS:
        return [f"the menu needs 1-{MAX_BUTTONS} buttons in `button`"]
    for i, b in enumerate(buttons, 1):
        where = _check_name(b, str(i), MAX_TOP_NAME, problems)
        subs = b.get("sub_button") if isinstance(b, dict) else None
        if subs is None:
            _check_leaf(b, where, problems)
            continue
        if not isinstance(subs, list) or not 1 <= len(subs) <= MAX_SUB_BUTTONS:
            problems.append(f"{where}: needs 1-{MAX_SUB_BUTTONS} sub-buttons")
            continue
        for j, s in enumerate(subs, 1):
            _check_leaf(s, _check_name(s, f"{i}.{j}", MAX_SUB_NAME, problems), problems)
    return problems


def _check_name(b, number: str, limit: int, problems: list[str]) -> str:
    """Check a button's name; returns how problems should name the button."""
    name = b.get("name") if isinstance(b, dict) else None
    where = f"button {number} ({name})"
    if not isinstance(name, str) or not name:
        problems.append(f"button {number}: needs a name")
    elif _bytes(name) > limit:
        problems.append(f"{where}: name is {_bytes(name)} bytes, at most {limit}")
    return where


def click_keys(menu: dict) -> list[str]:
    """The keys of every button that sends a CLICK (or scan) event with its key."""
    keys = []
    for b in menu.get("button", []):
        for leaf in b.get("sub_button", [b]):
            if leaf.get("type") in KEY_TYPES and leaf.get("type") != "location_select":
                keys.append(leaf["key"])
    return keys


def with_pages(menu: dict, pages_url: str) -> dict:
    """`{pages}` in view URLs replaced by `pages_url`, or those buttons dropped without it."""
    def resolve(leaf):
        url = leaf.get("url") if leaf.get("type") == "view" else None
        if not isinstance(url, str) or not url.startswith(PAGES):
            return leaf
        return {**leaf, "url": pages_url.rstrip("/") + url[len(PAGES):]} if pages_url else None

    buttons = []
    for b in menu.get("button", []) if isinstance(menu, dict) else []:
        if isinstance(b, dict) and isinstance(b.get("sub_button"), list):
            subs = [s for s in (resolve(x) if isinstance(x, dict) else x for x in b["sub_button"]) if s is not None]
            if subs:
                buttons.append({**b, "sub_button": subs})
        elif not isinstance(b, dict) or resolve(b) is not None:
            buttons.append(resolve(b) if isinstance(b, dict) else b)
    return {**menu, "button": buttons} if isinstance(menu, dict) else menu


def load(path: str | Path | None = None, pages_url: str = "") -> dict:
    """The menu as menu/create takes it, its page buttons pointing at `pages_url` (or left
    out without one); raises MenuError listing every problem."""
    menu = with_pages(json.loads(Path(path or PATH).read_text(encoding="utf-8")), pages_url)
    problems = validate(menu)
    if problems:
        raise MenuError(problems)
    return menu
