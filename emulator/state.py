"""What the emulated WeChat remembers: tokens, users, sends, quotas, faults, every call.

All of it is in memory (the emulator stands in for WeChat, whose state is not ours) and
every read or write holds one lock, so the threaded Flask server and the callback
threads never see half an update. Time is real time plus an offset the admin API moves.
"""

from __future__ import annotations

import re
import secrets
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from emulator.notices import NoticeState, shipped_templates

CHINA = timezone(timedelta(hours=8))
OPENID_RE = re.compile(r"^o[A-Za-z0-9_-]{5,63}$")

ERRMSG = {
    0: "ok",
    -1: "system error",
    40001: "invalid credential, access_token is invalid or not latest",
    40007: "invalid media_id",
    40029: "invalid code",
    40163: "code been used",
    40003: "invalid openid",
    40013: "invalid appid",
    40016: "invalid button size",
    40017: "invalid button type",
    40018: "invalid button name size",
    40019: "invalid button key size",
    40023: "invalid sub button size",
    40037: "invalid template_id",
    40125: "invalid appsecret",
    41001: "access_token missing",
    42001: "access_token expired",
    43004: "require subscribe",
    43101: "user refuse to accept the msg",
    44002: "empty post data",
    45009: "reach max api daily quota limit",
    45011: "api minute-quota reach limit, mustslower retry next minute",
    45015: "response out of time limit or subscription is canceled",
    45047: "out of response count limit",
    47001: "data format error",
    47003: "argument invalid!",
    40032: "invalid openid list size",
    40050: "invalid tag id",
    40249: "message blocked by content security check",
    40252: "message held for review",
    43116: "template banned: it violates the operating rules",
    45065: "clientmsgid exist",
    45157: "invalid tag name",
    45158: "tag name too long",
    45159: "invalid tag id",
}

# Web-page OAuth: a code lives about five minutes and is good for one exchange.
OAUTH_CODE_TTL = 300
JSAPI_TICKET_TTL = 7200

# Customer-service windows (official table, research/wechat.md §2.2).
MESSAGE_WINDOW, MESSAGE_QUOTA = 48 * 3600, 5
EVENT_WINDOW, EVENT_QUOTA = 60, 3


@dataclass
class Token:
    value: str
    appid: str
    stable: bool
    expires: float
    revoked: bool = False


@dataclass
class Fault:
    """An injected failure: `errcode` (or only latency) for the next `times` calls of
    `endpoint` ("*" = any), optionally only for one openid."""

    endpoint: str
    errcode: int | None = None
    errmsg: str | None = None
    times: int | None = 1  # None: until cleared
    latency_ms: int = 0
    openid: str | None = None

    def matches(self, endpoint: str, openid: str | None) -> bool:
        return (self.endpoint in ("*", endpoint)) and (self.openid is None or self.openid == openid)


@dataclass
class User:
    following: bool = True
    refuses: bool = False  # refused the account's notices: 43101 / "failed:user block"
    message_at: float | None = None
    message_used: int = 0
    event_at: float | None = None
    event_used: int = 0


@dataclass
class Settings:
    token_ttl: int = 7200
    legacy_grace: int = 300  # the old legacy token stays valid this long after a new fetch
    template_daily_quota: int = 100_000
    dedup_window: int = 600  # client_msg_id: same openid + id sends once in 10 minutes
    callback_url: str | None = None
    callback_delay_ms: int = 50


@dataclass
class EmulatorState:
    apps: dict[str, str]  # appid -> secret
    settings: Settings = field(default_factory=Settings)
    lock: threading.RLock = field(default_factory=threading.RLock)
    offset: float = 0.0
    tokens: dict[str, Token] = field(default_factory=dict)
    stable_current: dict[str, str] = field(default_factory=dict)  # appid -> token value
    legacy_current: dict[str, str] = field(default_factory=dict)
    users: dict[str, User] = field(default_factory=dict)
    unknown_openids: set[str] = field(default_factory=set)
    faults: list[Fault] = field(default_factory=list)
    rate_limits: dict[str, int] = field(default_factory=dict)  # endpoint -> calls/second
    rate_window: dict[str, deque] = field(default_factory=dict)
    calls: list[dict] = field(default_factory=list)
    messages: list[dict] = field(default_factory=list)  # accepted template sends
    custom_messages: list[dict] = field(default_factory=list)
    notices: list[dict] = field(default_factory=list)  # bizsend
    dedup: dict[tuple[str, str], tuple[int, float]] = field(default_factory=dict)
    quota_used: Counter = field(default_factory=Counter)  # (day, endpoint) -> count
    menu: dict | None = None
    tickets: dict[str, dict] = field(default_factory=dict)
    media: dict[str, tuple[bytes, str]] = field(default_factory=dict)  # media_id -> (bytes, content type)
    next_msgid: int = 2_000_000_001
    oauth_codes: dict[str, dict] = field(default_factory=dict)  # code -> appid, openid, issued, used
    jsapi_tickets: dict[str, tuple[str, float]] = field(default_factory=dict)  # appid -> (ticket, expires)
    # Subscribe notices, their consent, mass sends (emulator.notices)
    notice: NoticeState = field(default_factory=lambda: NoticeState(templates=shipped_templates()))

    # ---- time -----------------------------------------------------------------------------

    def now(self) -> float:
        return time.time() + self.offset

    def today(self) -> str:
        return datetime.fromtimestamp(self.now(), CHINA).date().isoformat()

    # ---- calls and faults -------------------------------------------------------------------

    def record(self, endpoint: str, **fields) -> dict:
        with self.lock:
            entry = {"seq": len(self.calls) + 1, "at": self.now(), "endpoint": endpoint, **fields}
            self.calls.append(entry)
            return entry

    def take_fault(self, endpoint: str, openid: str | None) -> Fault | None:
        """The first matching fault, used up by one call."""
        with self.lock:
            for fault in self.faults:
                if fault.matches(endpoint, openid):
                    if fault.times is not None:
                        fault.times -= 1
                        if fault.times <= 0:
                            self.faults.remove(fault)
                    return fault
            return None

    def over_rate(self, endpoint: str) -> bool:
        """True when `endpoint` got more calls in the last second than its injected limit."""
        with self.lock:
            limit = self.rate_limits.get(endpoint)
            if not limit:
                return False
            window = self.rate_window.setdefault(endpoint, deque())
            now = time.monotonic()
            while window and now - window[0] > 1.0:
                window.popleft()
            if len(window) >= limit:
                return True
            window.append(now)
            return False

    # ---- tokens ---------------------------------------------------------------------------

    def issue(self, appid: str, stable: bool) -> Token:
        with self.lock:
            now = self.now()
            token = Token(secrets.token_urlsafe(48), appid, stable, now + self.settings.token_ttl)
            self.tokens[token.value] = token
            current = self.stable_current if stable else self.legacy_current
            old = self.tokens.get(current.get(appid, ""))
            if old is not None and not stable:
                # "重复获取将导致上次获取的access_token失效" after a short overlap.
                old.expires = min(old.expires, now + self.settings.legacy_grace)
            current[appid] = token.value
            return token

    def stable_token(self, appid: str, force: bool) -> Token:
        """Normal mode hands everyone the same live token, renewed 5 minutes early."""
        with self.lock:
            cur = self.tokens.get(self.stable_current.get(appid, ""))
            if force or cur is None or cur.revoked or cur.expires - self.now() < min(300, self.settings.token_ttl / 2):
                return self.issue(appid, stable=True)
            return cur

    def check_token(self, value: str | None) -> int:
        """0, or the error code a call with this access_token gets."""
        if not value:
            return 41001
        with self.lock:
            token = self.tokens.get(value)
            if token is None or token.revoked:
                return 40001
            if token.expires <= self.now():
                return 42001
            return 0

    def token_appid(self, value: str) -> str:
        with self.lock:
            token = self.tokens.get(value)
            return token.appid if token else ""

    def revoke_tokens(self) -> int:
        with self.lock:
            for token in self.tokens.values():
                token.revoked = True
            return len(self.tokens)

    # ---- users ----------------------------------------------------------------------------

    def user(self, openid: str) -> User:
        with self.lock:
            return self.users.setdefault(openid, User())

    def recipient_error(self, openid: str) -> int:
        if not isinstance(openid, str) or not OPENID_RE.match(openid) or openid in self.unknown_openids:
            return 40003
        if not self.user(openid).following:
            return 43004
        return 0

    def interact(self, openid: str, kind: str, at: float | None = None) -> None:
        """The user messaged us (kind "message") or clicked/followed/scanned ("event")."""
        with self.lock:
            user = self.user(openid)
            at = self.now() if at is None else at
            if kind == "message":
                user.message_at, user.message_used = at, 0
            else:
                user.event_at, user.event_used = at, 0

    def use_custom_window(self, openid: str) -> int:
        """Spend one customer-service message of the user's open window: 0, 45015 or 45047."""
        with self.lock:
            user, now = self.user(openid), self.now()
            open_windows = 0
            if user.message_at is not None and now - user.message_at <= MESSAGE_WINDOW:
                open_windows += 1
                if user.message_used < MESSAGE_QUOTA:
                    user.message_used += 1
                    return 0
            if user.event_at is not None and now - user.event_at <= EVENT_WINDOW:
                open_windows += 1
                if user.event_used < EVENT_QUOTA:
                    user.event_used += 1
                    return 0
            return 45047 if open_windows else 45015

    # ---- web pages: OAuth codes and the JS-SDK ticket ------------------------------------------

    def oauth_code(self, appid: str, openid: str) -> str:
        with self.lock:
            code = secrets.token_urlsafe(24)
            self.oauth_codes[code] = {"appid": appid, "openid": openid, "issued": self.now(), "used": False}
            return code

    def redeem_code(self, appid: str, code: str) -> tuple[int, str | None]:
        """(0, openid) once per code; 40029 for an unknown, expired or other account's code,
        40163 for one already exchanged (what WeChat answers)."""
        with self.lock:
            entry = self.oauth_codes.get(code or "")
            if entry is None or entry["appid"] != appid or self.now() - entry["issued"] > OAUTH_CODE_TTL:
                return 40029, None
            if entry["used"]:
                return 40163, None
            entry["used"] = True
            return 0, entry["openid"]

    def jsapi_ticket(self, appid: str) -> tuple[str, int]:
        """The account's current ticket and its remaining life (a new one once expired)."""
        with self.lock:
            ticket, expires = self.jsapi_tickets.get(appid, ("", 0.0))
            if expires <= self.now():
                ticket, expires = secrets.token_urlsafe(64), self.now() + JSAPI_TICKET_TTL
                self.jsapi_tickets[appid] = (ticket, expires)
            return ticket, max(1, int(expires - self.now()))

    # ---- template messages ----------------------------------------------------------------

    def use_quota(self, endpoint: str, limit: int) -> bool:
        with self.lock:
            key = (self.today(), endpoint)
            if self.quota_used[key] >= limit:
                return False
            self.quota_used[key] += 1
            return True

    def deduplicated(self, openid: str, client_msg_id: str | None) -> int | None:
        """The msgid of an earlier send with the same openid + client_msg_id in the window."""
        if not client_msg_id:
            return None
        with self.lock:
            hit = self.dedup.get((openid, client_msg_id))
            if hit and self.now() - hit[1] < self.settings.dedup_window:
                return hit[0]
            return None

    def accept_template(self, body: dict) -> dict:
        with self.lock:
            msgid = self.next_msgid
            self.next_msgid += 1
            entry = {"msgid": msgid, "at": self.now(), "openid": body.get("touser"),
                     "template_id": body.get("template_id"), "data": body.get("data"),
                     "url": body.get("url"), "client_msg_id": body.get("client_msg_id")}
            self.messages.append(entry)
            if entry["client_msg_id"]:
                self.dedup[(entry["openid"], entry["client_msg_id"])] = (msgid, entry["at"])
            return entry

    # ---- reading the record -----------------------------------------------------------------

    def stats(self) -> dict:
        with self.lock:
            per_openid = Counter(m["openid"] for m in self.messages)
            endpoints = Counter(c["endpoint"] for c in self.calls)
            errors = Counter(f'{c["endpoint"]}:{c.get("errcode")}' for c in self.calls if c.get("errcode"))
            return {
                "calls": dict(endpoints),
                "errors": dict(errors),
                "templates_accepted": len(self.messages),
                "template_recipients": len(per_openid),
                "max_templates_per_recipient": max(per_openid.values(), default=0),
                "recipients_with_duplicates": sum(1 for n in per_openid.values() if n > 1),
                "dedup_hits": sum(1 for c in self.calls if c.get("dedup")),
                "token_fetches": endpoints.get("token", 0) + endpoints.get("stable_token", 0),
                "custom_messages": len(self.custom_messages),
                "notices": len(self.notices),
                "jsapi_ticket_fetches": endpoints.get("getticket", 0),
                "oauth_exchanges": endpoints.get("oauth_access_token", 0),
                "callbacks": sum(1 for c in self.calls if c["endpoint"] == "callback"),
            }

    def reset(self) -> None:
        with self.lock:
            fresh = EmulatorState(apps=self.apps)
            for name in fresh.__dataclass_fields__:
                if name != "lock":
                    setattr(self, name, getattr(fresh, name))
