"""Template messages and subscribe notices as the phone receives them: read back from the
WeChat API emulator's record of what the worker sent (the emulator stands in for WeChat's servers, so what it
recorded is exactly what a real phone would have been shown).
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import requests

from bot.config import DEFAULT_API_BASE


def emulator_root(api_base: str) -> str | None:
    """The emulator's root URL from WECHAT_API_BASE (…/cgi-bin/), or None for real WeChat."""
    if not api_base or api_base.rstrip("/") == DEFAULT_API_BASE.rstrip("/"):
        return None
    root = api_base.rstrip("/")
    if root.endswith("/cgi-bin"):
        root = root[: -len("/cgi-bin")]
    return root


def pushes_for(config, openid: str, since: str) -> dict:
    """Template messages and notices the emulator accepted for `openid` with a msgid above
    `since` (both draw their ids from one counter, so one cursor covers both)."""
    root = emulator_root(config.wechat_api_base)
    try:
        after = int(since or 0)
    except ValueError:
        after = 0
    empty = {"pushes": [], "cursor": str(after)}
    if root is None:
        return {"ok": False, "error": "no emulator configured", **empty}
    try:
        answers = [requests.get(f"{root}/_emulator/{what}", params={"openid": openid}, timeout=3)
                   for what in ("messages", "notices")]
    except requests.RequestException as e:
        return {"ok": False, "error": f"emulator unreachable: {type(e).__name__}", **empty}
    for resp in answers:
        if resp.status_code != 200:
            return {"ok": False, "error": f"emulator HTTP {resp.status_code}", **empty}
    sent = sorted(answers[0].json() + answers[1].json(), key=lambda m: int(m.get("msgid") or 0))
    pushes = [card(m) for m in sent if int(m.get("msgid") or 0) > after]
    cursor = max([after] + [p["id"] for p in pushes])
    return {"ok": True, "pushes": pushes, "cursor": str(cursor)}


def check_jssdk(config, url: str, cfg: dict) -> dict:
    """Is `cfg` (a page's wx.config) signed for `url` with the account's current jsapi_ticket,
    as the emulator issued it? (WeChat's own check, for the simulator's fake JS-SDK.)"""
    import hashlib

    root = emulator_root(config.wechat_api_base)
    if root is None:
        return {"ok": False, "error": "no emulator configured"}
    if not isinstance(cfg, dict) or cfg.get("appId") != config.wechat_appid:
        return {"ok": False, "error": "appId"}
    try:
        ticket = requests.get(f"{root}/_emulator/jsapi-ticket", params={"appid": config.wechat_appid},
                              timeout=3).json().get("ticket", "")
    except (requests.RequestException, ValueError) as e:
        return {"ok": False, "error": f"emulator unreachable: {type(e).__name__}"}
    raw = f"jsapi_ticket={ticket}&noncestr={cfg.get('nonceStr')}&timestamp={cfg.get('timestamp')}&url={url.split('#')[0]}"
    ok = bool(ticket) and hashlib.sha1(raw.encode()).hexdigest() == cfg.get("signature")
    return {"ok": ok, **({} if ok else {"error": "invalid signature"})}


TEMPLATE_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def tap_subscribe(config, openid: str, template_ids: list) -> dict:
    """A tap on 允许 of WeChat's subscribe button in the in-app browser: the emulator records
    the consent and pushes the subscribe event to the webhook, as WeChat does."""
    root = emulator_root(config.wechat_api_base)
    ids = [t for t in (template_ids or [])[:10] if isinstance(t, str) and TEMPLATE_ID.match(t)]
    if root is None or not ids or not isinstance(openid, str) or not 0 < len(openid) <= 64:
        return {"ok": False, "error": "no emulator, openid or template ids"}
    try:
        requests.post(f"{root}/_emulator/notice-consent", json={"openid": openid, "template_ids": ids,
                                                                 "accept": True, "via": "popup", "scene": 1},
                      timeout=5).raise_for_status()
    except requests.RequestException as e:
        return {"ok": False, "error": f"emulator unreachable: {type(e).__name__}"}
    return {"ok": True, "template_ids": ids}


CHINA = timezone(timedelta(hours=8))


def sent_label(at) -> str:
    """When the emulator accepted the message, Beijing time to the second ("12月05日 03:45:12"):
    each card shows its own arrival, as WeChat shows each message's; the template's 时间
    field is the event's minute, the same for events of one minute."""
    try:
        return datetime.fromtimestamp(float(at), CHINA).strftime("%m月%d日 %H:%M:%S")
    except (TypeError, ValueError, OverflowError, OSError):
        return ""


def card(message: dict) -> dict:
    """A template message or notice as the phone shows it: the template's own title (no
    `first` line since 2023), then the fields in the template's order (keys end with their
    position: thing1, time2, …) under the template's labels, and when it was sent."""
    data = {k: (v.get("value") if isinstance(v, dict) else v) for k, v in (message.get("data") or {}).items()}
    template_id = message.get("template_id") or ""
    title, names = template_view(template_id)
    ordered = sorted(data, key=lambda k: (int(re.sub(r"\D", "", k) or 0), k))
    return {"id": int(message.get("msgid") or 0), "title": title,
            "fields": [[names.get(k, k), str(data[k])] for k in ordered],
            "url": message.get("url") or "", "template_id": template_id,
            "channel": message.get("channel") or "template", "sent_at": sent_label(message.get("at"))}


def template_view(template_id: str) -> tuple[str, dict]:
    """(title, key -> label) of a template, from the district's catalog (menus/templates.yaml)."""
    from menus.notices import default_catalog

    for kind in default_catalog().kinds.values():
        if kind.template_id == template_id:
            return kind.title, {f.key: f.label for f in kind.fields}
    return "服务通知", {}
