"""The emulated WeChat of notices: subscribe notices and their consent, the field rules
every template and notice value must meet, and mass sends by tag (群发) with their
monthly quota. Kept apart from `emulator.app` (which calls `register`) so the two grow
independently.

What it models (research/platform-rules.md, research/wechat.md §2.3-2.4):
- consent per user and notice template, given by the user (`POST /_emulator/notice-consent`
  stands for a tap on a wx-open-subscribe button or in the notice settings; the emulator
  then pushes the subscribe_msg_popup_event / subscribe_msg_change_event to the webhook);
  a one-time template allows one notice per acceptance; bizsend without consent is 43101;
- field rules (since 2023): no `first`/`remark`; thing ≤ 20, phrase ≤ 5 Chinese characters,
  character_string ≤ 32 ASCII, time/date as WeChat writes them …: 47003 otherwise;
- mass send: tags, tagging, `message/mass/sendall` by tag; each follower receives at most
  MASS_MONTHLY a month (the rest are filtered, FilterCount), `clientmsgid` dedups for 24 h.

This validator is written from WeChat's rules, not from our `menus.notices.fit`: the tests
check the one against the other.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

MASS_MONTHLY = 4  # a 服务号's follower receives at most 4 mass sends a month
MASS_DEDUP = 24 * 3600
TAG_BATCH = 50  # openids per tags/members/batchtagging call

_HAN = r"\u3400-\u9fff"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_DATE = r"(?:\d{4}年)?\d{1,2}月\d{1,2}日"
_CLOCK = r"\d{2}:\d{2}"
_POINT = re.compile(rf"^(?:{_DATE})?(?: ?{_CLOCK})?$")
RULES = {
    "thing": lambda v: len(v) <= 20,
    "const": lambda v: len(v) <= 20,
    "number": lambda v: len(v) <= 32 and re.fullmatch(r"-?\d+(?:\.\d+)?", v),
    "letter": lambda v: len(v) <= 32 and re.fullmatch(r"[A-Za-z]+", v),
    "symbol": lambda v: len(v) <= 5 and not re.search(rf"[0-9A-Za-z{_HAN}\s]", v),
    "character_string": lambda v: len(v) <= 32 and re.fullmatch(r"[\x20-\x7e]+", v),
    "time": lambda v: _span_ok(v, need_date=False),
    "date": lambda v: _span_ok(v, need_date=True),
    "amount": lambda v: re.fullmatch(r"[¥￥$]?-?\d{1,10}(?:\.\d+)?元?", v),
    "phone_number": lambda v: len(v) <= 17 and re.fullmatch(r"[\d+\-()]+", v),
    "car_number": lambda v: len(v) <= 8 and re.fullmatch(rf"[{_HAN}A-Z0-9][A-Z0-9]*[{_HAN}A-Z0-9]?", v),
    "name": lambda v: (len(v) <= 10 if re.search(f"[{_HAN}]", v) else len(v) <= 20 and re.fullmatch(r"[A-Za-z .-]+", v)),
    "phrase": lambda v: re.fullmatch(f"[{_HAN}]{{1,5}}", v),
}


def _span_ok(value: str, need_date: bool) -> bool:
    parts = value.split("~")
    if len(parts) > 2 or not all(p and _POINT.match(p) for p in parts):
        return False
    return not need_date or bool(re.match(_DATE, parts[0]))


def field_error(key: str, value) -> str | None:
    """Why WeChat refuses `value` for the template key `key` (None: it takes it)."""
    kind = key.rstrip("0123456789")
    if kind in ("first", "remark"):
        return f"data.{key} is not shown since 2023-05 and not accepted"
    rule = RULES.get(kind)
    if rule is None:
        return f"data.{key}: unknown field type"
    if not isinstance(value, str) or not value or _CONTROL.search(value):
        return f"data.{key}.value empty or with control characters"
    if not rule(value):
        return f"argument invalid! data.{key}.value"
    return None


def data_error(data) -> str | None:
    """The first field of a template/notice `data` WeChat would refuse, or None."""
    if not isinstance(data, dict) or not data:
        return "data missing"
    for key, item in data.items():
        value = item.get("value") if isinstance(item, dict) else None
        problem = field_error(str(key), value)
        if problem:
            return problem
    return None


@dataclass
class Consent:
    state: str = "rejected"  # accepted | rejected
    grants: int = 0
    sent: int = 0


@dataclass
class NoticeState:
    """What the emulated WeChat remembers about notices and mass sends (guarded by the
    emulator state's lock)."""

    templates: dict[str, str] = field(default_factory=dict)  # notice template id -> one_time | long_term
    consents: dict[tuple[str, str], Consent] = field(default_factory=dict)
    sent: list[dict] = field(default_factory=list)  # accepted bizsends
    tags: dict[int, dict] = field(default_factory=dict)  # id -> {"name", "members": set}
    next_tag: int = 100
    mass: list[dict] = field(default_factory=list)
    mass_received: Counter = field(default_factory=Counter)  # (openid, "YYYY-MM") -> mass sends
    mass_ids: dict[str, tuple[int, float]] = field(default_factory=dict)  # clientmsgid -> (msg_id, at)
    next_mass: int = 3_000_000_001

    def consent(self, openid: str, template_id: str) -> Consent:
        return self.consents.setdefault((openid, template_id), Consent())

    def choose(self, openid: str, template_id: str, accept: bool) -> None:
        c = self.consent(openid, template_id)
        if accept:
            if c.state != "accepted":
                c.grants, c.sent = 0, 0
            c.state, c.grants = "accepted", c.grants + 1
        else:
            c.state, c.grants, c.sent = "rejected", 0, 0

    def may_receive(self, openid: str, template_id: str) -> bool:
        c = self.consents.get((openid, template_id))
        if c is None or c.state != "accepted":
            return False
        return self.templates.get(template_id, "long_term") == "long_term" or c.sent < c.grants


def shipped_templates() -> dict[str, str]:
    """The notice templates of the district's account as the demo configures it: the
    subscribe kinds of menus/templates.yaml (ids as shipped), each with its consent type."""
    from menus.notices import default_catalog

    return {k.template_id: k.consent for k in default_catalog().kinds.values() if k.channel == "subscribe"}


def register(app, state, *, reply, to_user, guarded, body, sender_for_callbacks) -> None:
    """Add the notice and mass-send routes to the emulator `app` (see the module doc)."""
    from flask import jsonify, request

    @app.post("/cgi-bin/message/subscribe/bizsend")
    def bizsend():
        data, openid, refused = to_user("bizsend")
        if refused:
            return refused
        code = state.recipient_error(openid)
        template_id = data.get("template_id")
        problem = None
        with state.lock:
            if not code and (not template_id or template_id not in state.notice.templates):
                code = 40037
            if not code and (state.user(openid).refuses or not state.notice.may_receive(openid, template_id)):
                code = 43101
            if not code:
                problem = data_error(data.get("data"))
                code = 47003 if problem else 0
            if not code:
                state.notice.consent(openid, template_id).sent += 1
                msgid = state.next_msgid  # the MsgID of its subscribe_msg_sent_event
                state.next_msgid += 1
                entry = {"msgid": msgid, "at": state.now(), "openid": openid, "template_id": template_id,
                         "data": data.get("data"), "url": data.get("page"), "channel": "subscribe"}
                state.notice.sent.append(entry)
                state.notices.append(entry)
        if code:
            return reply("bizsend", code, problem, openid=openid, request=data)
        return reply("bizsend", 0, openid=openid, template_id=template_id)

    @app.post("/cgi-bin/tags/create")
    def tags_create():
        data = body()
        failed = guarded("tags_create")
        if failed:
            return reply("tags_create", *failed, request=data)
        name = str(((data.get("tag") or {}).get("name")) or "")
        if not name or len(name) > 30:
            return reply("tags_create", 45158, "tag name too long")
        with state.lock:
            if any(t["name"] == name for t in state.notice.tags.values()):
                return reply("tags_create", 45157, "invalid tag name")
            tag_id = state.notice.next_tag
            state.notice.next_tag += 1
            state.notice.tags[tag_id] = {"name": name, "members": set()}
        return reply("tags_create", 0, tag=name, response={"tag": {"id": tag_id, "name": name}})

    @app.post("/cgi-bin/tags/members/batchtagging")
    def tags_batch():
        data = body()
        failed = guarded("tags_batchtagging")
        if failed:
            return reply("tags_batchtagging", *failed)
        openids, tag_id = data.get("openid_list") or [], data.get("tagid")
        if not isinstance(openids, list) or not 0 < len(openids) <= TAG_BATCH:
            return reply("tags_batchtagging", 40032, "invalid openid list size")
        with state.lock:
            tag = state.notice.tags.get(tag_id)
            if tag is None:
                return reply("tags_batchtagging", 45159, "invalid tag id")
            if any(state.recipient_error(o) == 40003 for o in openids):
                return reply("tags_batchtagging", 40003)
            tag["members"].update(openids)
        return reply("tags_batchtagging", 0, tagid=tag_id, count=len(openids))

    @app.post("/cgi-bin/tags/delete")
    def tags_delete():
        data = body()
        failed = guarded("tags_delete")
        if failed:
            return reply("tags_delete", *failed)
        with state.lock:
            found = state.notice.tags.pop((data.get("tag") or {}).get("id"), None)
        return reply("tags_delete", 0 if found else 45159)

    @app.post("/cgi-bin/message/mass/sendall")
    def mass_sendall():
        data = body()
        failed = guarded("mass_sendall")
        if failed:
            return reply("mass_sendall", *failed, request=data)
        filt = data.get("filter") or {}
        if data.get("msgtype") != "text" or not str((data.get("text") or {}).get("content") or ""):
            return reply("mass_sendall", 47001)
        client_id = data.get("clientmsgid")
        with state.lock:
            now = state.now()
            earlier = state.notice.mass_ids.get(client_id) if client_id else None
            if earlier and now - earlier[1] < MASS_DEDUP:
                return reply("mass_sendall", 45065, "clientmsgid exist", response={"msg_id": earlier[0]})
            tag = state.notice.tags.get(filt.get("tag_id"))
            if filt.get("is_to_all") or tag is None:
                return reply("mass_sendall", 40050 if tag is None else 47001, "invalid tag")
            month = datetime.fromtimestamp(now).strftime("%Y-%m")
            members = sorted(o for o in tag["members"] if state.user(o).following)
            receive = [o for o in members if state.notice.mass_received[(o, month)] < MASS_MONTHLY]
            for o in receive:
                state.notice.mass_received[(o, month)] += 1
            msg_id = state.notice.next_mass
            state.notice.next_mass += 1
            if client_id:
                state.notice.mass_ids[client_id] = (msg_id, now)
            state.notice.mass.append({"msg_id": msg_id, "at": now, "tag_id": filt.get("tag_id"),
                                 "content": data["text"]["content"], "total": len(members),
                                 "sent": len(receive), "filtered": len(members) - len(receive)})
        return reply("mass_sendall", 0, msg_id=msg_id, response={"msg_id": msg_id, "msg_data_id": msg_id})

    # ---- admin: the user's side, and what was sent -----------------------------------------

    @app.post("/_emulator/notice-consent")
    def admin_notice_consent():
        """The user taps 允许/取消 on a subscribe button (via "popup", scene 1 page / 2
        article) or turns a notice off in the settings (via "settings"); the emulator
        pushes the matching event to the webhook, as WeChat does."""
        data = body()
        openid, ids = data.get("openid", ""), data.get("template_ids") or [data.get("template_id", "")]
        accept, via = bool(data.get("accept", True)), data.get("via", "popup")
        with state.lock:
            for tid in ids:
                state.notice.choose(openid, tid, accept and via != "settings")
        status = "accept" if accept and via != "settings" else "reject"
        if via == "settings":
            event, wrapper = "subscribe_msg_change_event", "SubscribeMsgChangeEvent"
            items = [{"TemplateId": t, "SubscribeStatusString": status} for t in ids]
        else:
            event, wrapper = "subscribe_msg_popup_event", "SubscribeMsgPopupEvent"
            items = [{"TemplateId": t, "SubscribeStatusString": status, "PopupScene": int(data.get("scene", 1))}
                     for t in ids]
        posted = None
        url = state.settings.callback_url
        if url:
            import requests

            sender = sender_for_callbacks()
            fields = sender.event(openid, event, None, **{wrapper: {"List": items}})
            sent = sender.post(requests, url, fields)
            posted = {"http_status": sent.status, "body": sent.body[:64]}
        state.record("notice_consent", openid=openid, template_ids=ids, status=status, posted=posted)
        return jsonify({"ok": True, "status": status, "posted": posted})

    @app.post("/_emulator/notice-consents")
    def admin_notice_consents():
        """Consent the users gave before this emulator started (the demo's seeded followers):
        [{openid, template_id, grants, sent}], set without pushing events to the webhook."""
        items = request.get_json(force=True, silent=True)
        if not isinstance(items, list):
            return jsonify({"ok": False, "error": "a list of {openid, template_id, grants, sent}"}), 400
        with state.lock:
            for item in items:
                if isinstance(item, dict) and item.get("openid") and item.get("template_id"):
                    state.notice.consents[(str(item["openid"]), str(item["template_id"]))] = Consent(
                        "accepted", int(item.get("grants") or 1), int(item.get("sent") or 0))
        return jsonify({"ok": True, "count": len(items)})

    @app.post("/_emulator/notice-templates")
    def admin_notice_templates():
        data = body()
        with state.lock:
            state.notice.templates[str(data.get("template_id", ""))] = data.get("consent", "long_term")
            return jsonify({"templates": state.notice.templates})

    @app.get("/_emulator/notices")
    def admin_notices():
        openid = request.args.get("openid")
        with state.lock:
            rows = [n for n in state.notice.sent if not openid or n["openid"] == openid]
        return jsonify(rows[-int(request.args.get("limit", 1000)):])

    @app.get("/_emulator/consents")
    def admin_consents():
        openid = request.args.get("openid")
        with state.lock:
            rows = [{"openid": o, "template_id": t, **vars(c)} for (o, t), c in state.notice.consents.items()
                    if not openid or o == openid]
        return jsonify(rows)

    @app.get("/_emulator/mass")
    def admin_mass():
        with state.lock:
            return jsonify({"sends": state.notice.mass,
                            "tags": {i: {"name": t["name"], "members": len(t["members"])} for i, t in state.notice.tags.items()}})
