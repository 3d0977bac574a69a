"""Coordinator accounts: passwords (Argon2id), the login check with throttling, and
creating accounts (used by `volbot console add-user` and tests).

Throttling lives in Redis (counters that may be lost): after `USER_LIMIT` failures for a
username, or `IP_LIMIT` from one address, within `WINDOW` seconds, logins for it are
refused until the window passes — even with the right password, so guessing cannot go on.
"""

from __future__ import annotations

from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from rules.access import ROLE_TEAM_KINDS, ROLES
from store.models import Coordinator, Team

USER_LIMIT = 5
IP_LIMIT = 30
WINDOW = 15 * 60
MIN_PASSWORD = 10

_hasher = PasswordHasher()  # Argon2id with the library's current recommended costs
# Verified against when the username is unknown, so both cases take the same time.
_DUMMY_HASH = _hasher.hash("volbot-no-such-user")


class AccountError(ValueError):
    pass


def hash_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise AccountError(f"the password must have at least {MIN_PASSWORD} characters")
    return _hasher.hash(password)


def verify_password(stored: str | None, password: str) -> bool:
    try:
        return _hasher.verify(stored or _DUMMY_HASH, password) and stored is not None
    except (VerificationError, InvalidHashError):
        return False


@dataclass
class LoginResult:
    coordinator: Coordinator | None = None
    throttled: bool = False
    rehash: str | None = None  # a new hash when the stored one used older parameters


def _keys(username: str, ip: str) -> tuple[str, str]:
    return f"console:loginfail:u:{username.strip().lower()}", f"console:loginfail:ip:{ip}"


def clear_throttle(redis, username: str) -> None:
    redis.delete(_keys(username, "")[0])


def check_login(session: Session, redis, username: str, password: str, ip: str) -> LoginResult:
    user_key, ip_key = _keys(username, ip)
    counts = redis.mget(user_key, ip_key)
    if int(counts[0] or 0) >= USER_LIMIT or int(counts[1] or 0) >= IP_LIMIT:
        return LoginResult(throttled=True)
    coordinator = session.scalar(
        select(Coordinator).where(func.lower(Coordinator.username) == username.strip().lower())
    )
    ok = verify_password(coordinator.password_hash if coordinator else None, password)
    if not ok or coordinator is None or not coordinator.active:
        pipe = redis.pipeline()
        for key in (user_key, ip_key):
            pipe.incr(key)
            pipe.ttl(key)
        results = pipe.execute()
        for key, ttl in zip((user_key, ip_key), results[1::2]):
            if ttl < 0:  # the window starts at the first failure (EXPIRE NX needs Redis 7)
                redis.expire(key, WINDOW)
        return LoginResult()
    redis.delete(user_key)
    rehash = _hasher.hash(password) if _hasher.check_needs_rehash(coordinator.password_hash) else None
    return LoginResult(coordinator=coordinator, rehash=rehash)


def create_account(session: Session, *, team_code: str, username: str, role: str, password: str,
                   name: str | None = None) -> Coordinator:
    """A new coordinator login for a team; the role must fit the team's kind."""
    if role not in ROLES:
        raise AccountError(f"role must be one of {', '.join(ROLES)}")
    team = session.scalar(select(Team).where(Team.code == team_code.strip()))
    if team is None:
        raise AccountError(f"no team with code {team_code!r}")
    if team.kind not in ROLE_TEAM_KINDS[role]:
        raise AccountError(f"a {role} coordinator needs a team of kind "
                           f"{' or '.join(ROLE_TEAM_KINDS[role])}; {team.code} is a {team.kind}")
    username = username.strip()
    if not username or len(username) > 64:
        raise AccountError("the username must have 1 to 64 characters")
    taken = session.scalar(select(Coordinator.id).where(func.lower(Coordinator.username) == username.lower()))
    if taken is not None:
        raise AccountError(f"username {username!r} is taken")
    coordinator = Coordinator(team_id=team.id, name=(name or username)[:32], role=role,
                              username=username, password_hash=hash_password(password), active=True)
    session.add(coordinator)
    session.flush()
    return coordinator
