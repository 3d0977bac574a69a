"""The simulator's WeChat client: turns what a person does on the simulated phone (type,
tap a menu button, send a location, scan a QR code, follow) into the push WeChat's servers
would send, signs it (and encrypts it in safe mode) with `bot.sender.WeChatSender`, POSTs
it over HTTP to the webhook and decodes the reply.

Nothing here calls the handlers directly: the simulator is a WeChat client like any other.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import requests

from bot.sender import WeChatSender

OPENID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
KINDS = ("text", "voice", "click", "view", "location", "scan", "subscribe", "unsubscribe", "image")
MAX_TEXT = 600  # characters a person may type in one message here


class BadAction(ValueError):
    """The page asked for something WeChat would never send; the message says what."""


@dataclass(frozen=True)
class Action:
    openid: str
    kind: str
    text: str = ""
    key: str = ""
    lat: float = 0.0
    lng: float = 0.0
    label: str = ""
    followed: bool = True  # whether the persona already follows (decides SCAN vs subscribe)

    @classmethod
    def from_json(cls, data: dict) -> "Action":
        if not isinstance(data, dict):
            raise BadAction("expected a JSON object")
        openid = str(data.get("openid") or "")
        if not OPENID.match(openid):
            raise BadAction("openid: letters, digits, _ and - only (1-64)")
        kind = str(data.get("kind") or "")
        if kind not in KINDS:
            raise BadAction(f"kind: one of {', '.join(KINDS)}")
        text = str(data.get("text") or "")[:MAX_TEXT]
        key = str(data.get("key") or "")[:128]
        lat = lng = 0.0
        if kind == "location":
            try:
                lat, lng = float(data["lat"]), float(data["lng"])
            except (KeyError, TypeError, ValueError):
                raise BadAction("location: lat and lng must be numbers")
            if not (-90 <= lat <= 90 and -180 <= lng <= 180):
                raise BadAction("location: out of range")
        if kind in ("text", "voice") and not text.strip():
            raise BadAction("text: empty message")
        if kind in ("click", "view", "scan") and not key:
            raise BadAction("key: required")
        return cls(openid=openid, kind=kind, text=text, key=key, lat=lat, lng=lng,
                   label=str(data.get("label") or "")[:128], followed=bool(data.get("followed", True)))


def build_push(sender: WeChatSender, action: Action) -> dict:
    """The fields of the push WeChat would send for this action."""
    o = action.openid
    if action.kind == "text":
        return sender.text(o, action.text)
    if action.kind == "voice":
        return sender.voice(o, action.text)
    if action.kind == "image":
        return sender.image(o)
    if action.kind == "location":
        return sender.location(o, round(action.lat, 6), round(action.lng, 6), action.label)
    if action.kind == "click":
        return sender.event(o, "CLICK", action.key)
    if action.kind == "view":
        return sender.event(o, "VIEW", action.key)
    if action.kind == "scan":
        # WeChat sends SCAN to a follower; someone not yet following follows through the code.
        if action.followed:
            return sender.event(o, "SCAN", action.key, Ticket="sim-ticket")
        return sender.event(o, "subscribe", f"qrscene_{action.key}", Ticket="sim-ticket")
    if action.kind == "subscribe":
        return sender.event(o, "subscribe", f"qrscene_{action.key}" if action.key else None)
    if action.kind == "unsubscribe":
        return sender.event(o, "unsubscribe")
    raise BadAction(f"kind: {action.kind}")


def send(sender: WeChatSender, webhook_url: str, action: Action, encrypt: bool | None = None,
         http=None) -> dict:
    """Post the action's push to the webhook; the decoded answer as the page shows it."""
    fields = build_push(sender, action)
    http = http or requests
    try:
        sent = sender.post(http, webhook_url, fields, encrypt)
    except requests.RequestException as e:
        return {"ok": False, "error": f"连接失败：{type(e).__name__}"}
    if sent.status != 200:
        return {"ok": False, "error": f"HTTP {sent.status}: {sent.body[:200]}"}
    encrypted = bool(encrypt if encrypt is not None else sender.aes_key)
    result = {"ok": True, "encrypted": encrypted, "type": sent.msg_type or "none", "text": "",
              "article": None}
    if sent.msg_type == "text":
        result["text"] = sent.text
    elif sent.msg_type == "news":
        items = sent.fields["Articles"]["item"]
        item = items[0] if isinstance(items, list) else items
        result["article"] = {k: item.get(v) or "" for k, v in
                             (("title", "Title"), ("description", "Description"), ("url", "Url"),
                              ("pic_url", "PicUrl"))}
    return result
