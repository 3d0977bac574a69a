"""Console sessions, server-side in Redis: one hash per session and one set per account.

`console:session:<sid>` (sid = SHA-256 of the browser's random token, so Redis never holds
a usable token) keeps the coordinator id, a fingerprint of the account (web.py), the CSRF
token, when it started and was last used, the address and browser it was last used from,
and, while enrolling a second factor, the secret not yet confirmed. `console:sessions:<cid>`
lists an account's sids, so all of them can be listed and ended at once (a password change
or reset, an account disabled, a second factor reset).

Why Redis and not a SQL table: a session may be lost — losing Redis signs everyone out,
nothing more — and every console request reads and touches its session; SQL stays the
source of truth for the accounts themselves.

A session ends after `idle` seconds without a request (VOLBOT_CONSOLE_IDLE_MINUTES) and
`MAX_AGE` after sign-in whatever happens. Both are decided on the services' clock (which
tests move), and the keys' Redis TTL only collects the garbage.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timezone

MAX_AGE = 12 * 3600
PENDING_TTL = 5 * 60  # seconds between a right password and the second factor
PENDING_TRIES = 5


def session_id(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _key(sid: str) -> str:
    return "console:session:" + sid


def _index(cid: int) -> str:
    return f"console:sessions:{cid}"


def _pending_key(token: str) -> str:
    return "console:login:pending:" + session_id(token)


@dataclass
class ConsoleSession:
    sid: str
    cid: int
    who: str
    csrf: str
    started: float
    seen: float
    ip: str
    agent: str
    enrol_secret: str = ""

    @property
    def started_at(self) -> datetime:
        return datetime.fromtimestamp(self.started, timezone.utc)

    @property
    def seen_at(self) -> datetime:
        return datetime.fromtimestamp(self.seen, timezone.utc)

    @property
    def device(self) -> str:
        return describe_agent(self.agent)


def _decode(sid: str, data: dict) -> ConsoleSession | None:
    try:
        text = {k.decode(): v.decode() for k, v in data.items()}
        return ConsoleSession(sid=sid, cid=int(text["cid"]), who=text["who"], csrf=text["csrf"],
                              started=float(text["started"]), seen=float(text["seen"]), ip=text.get("ip", ""),
                              agent=text.get("agent", ""), enrol_secret=text.get("enrol", ""))
    except (KeyError, ValueError, UnicodeDecodeError):
        return None


class SessionStore:
    def __init__(self, redis, clock, idle: int):
        self.redis = redis
        self.clock = clock
        self.idle = idle

    def _ttl(self) -> int:
        return min(self.idle, MAX_AGE) + 60

    def start(self, cid: int, who: str, ip: str, agent: str) -> tuple[str, ConsoleSession]:
        """A new session: the browser's token and the session."""
        token = secrets.token_urlsafe(32)
        now = self.clock.timestamp()
        session = ConsoleSession(sid=session_id(token), cid=cid, who=who, csrf=secrets.token_urlsafe(24),
                                 started=now, seen=now, ip=ip[:64], agent=agent[:256])
        pipe = self.redis.pipeline()
        pipe.hset(_key(session.sid), mapping={"cid": cid, "who": who, "csrf": session.csrf, "started": now,
                                               "seen": now, "ip": session.ip, "agent": session.agent})
        pipe.expire(_key(session.sid), self._ttl())
        pipe.sadd(_index(cid), session.sid)
        pipe.expire(_index(cid), MAX_AGE + 60)
        pipe.execute()
        return token, session

    def load(self, token: str | None) -> ConsoleSession | None:
        """The live session of `token`, or None (unknown, idle too long, too old)."""
        if not token:
            return None
        sid = session_id(token)
        session = _decode(sid, self.redis.hgetall(_key(sid)))
        if session is None:
            return None
        now = self.clock.timestamp()
        if now - session.seen > self.idle or now - session.started > MAX_AGE:
            self.end(session.cid, sid)
            return None
        return session

    def touch(self, session: ConsoleSession, ip: str, agent: str) -> None:
        """Record a request: last seen now, from this address and browser."""
        session.seen, session.ip, session.agent = self.clock.timestamp(), ip[:64], agent[:256]
        pipe = self.redis.pipeline()
        pipe.hset(_key(session.sid), mapping={"seen": session.seen, "ip": session.ip, "agent": session.agent})
        pipe.expire(_key(session.sid), self._ttl())
        pipe.execute()

    def set_enrol_secret(self, session: ConsoleSession, secret: str) -> None:
        session.enrol_secret = secret
        if secret:
            self.redis.hset(_key(session.sid), "enrol", secret)
        else:
            self.redis.hdel(_key(session.sid), "enrol")

    def of_account(self, cid: int) -> list[ConsoleSession]:
        """The account's live sessions, most recently used first (forgetting dead ones)."""
        sids = sorted(s.decode() for s in self.redis.smembers(_index(cid)))
        pipe = self.redis.pipeline()
        for sid in sids:
            pipe.hgetall(_key(sid))
        live, dead = [], []
        now = self.clock.timestamp()
        for sid, data in zip(sids, pipe.execute()):
            session = _decode(sid, data)
            if session is None or session.cid != cid or now - session.seen > self.idle \
                    or now - session.started > MAX_AGE:
                dead.append(sid)
            else:
                live.append(session)
        for sid in dead:
            self.end(cid, sid)
        return sorted(live, key=lambda s: -s.seen)

    def end(self, cid: int, sid: str) -> bool:
        """End one session of the account; False if it was not one of its live ones."""
        pipe = self.redis.pipeline()
        pipe.srem(_index(cid), sid)
        pipe.delete(_key(sid))
        removed, _ = pipe.execute()
        return bool(removed)

    def end_all(self, cid: int, keep: str | None = None) -> int:
        """End every session of the account (but `keep`); how many ended."""
        ended = 0
        for sid in [s.decode() for s in self.redis.smembers(_index(cid))]:
            if sid != keep:
                self.end(cid, sid)
                ended += 1
        return ended

    # ---- between a right password and the second factor ------------------------------

    def start_pending(self, cid: int, who: str) -> str:
        token = secrets.token_urlsafe(32)
        key = _pending_key(token)
        self.redis.hset(key, mapping={"cid": cid, "who": who, "tries": 0})
        self.redis.expire(key, PENDING_TTL)
        return token

    def pending(self, token: str | None) -> tuple[int, str] | None:
        if not token:
            return None
        data = self.redis.hgetall(_pending_key(token))
        try:
            return int(data[b"cid"]), data[b"who"].decode()
        except (KeyError, ValueError):
            return None

    def pending_failed(self, token: str) -> None:
        """A wrong code: after PENDING_TRIES the password must be given again."""
        if self.redis.hincrby(_pending_key(token), "tries", 1) >= PENDING_TRIES:
            self.end_pending(token)

    def end_pending(self, token: str) -> None:
        self.redis.delete(_pending_key(token))


_SYSTEMS = (("Windows", "Windows"), ("Android", "安卓"), ("iPhone", "iPhone"), ("iPad", "iPad"),
            ("Mac OS X", "Mac"), ("Linux", "Linux"))
_BROWSERS = (("MicroMessenger", "微信内置浏览器"), ("Edg/", "Edge"), ("Firefox/", "Firefox"),
             ("Chrome/", "Chrome"), ("Safari/", "Safari"))


def describe_agent(agent: str) -> str:
    """A browser and system a person recognises ("Chrome · Windows") from a User-Agent."""
    browser = next((name for token, name in _BROWSERS if token in agent), "")
    system = next((name for token, name in _SYSTEMS if token in agent), "")
    return " · ".join(p for p in (browser, system) if p) or "未知设备"
