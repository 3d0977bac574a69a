"""Coordinator accounts: passwords (Argon2id), the password check of a login, and creating
accounts (used by `volbot console add-user` and tests). Throttling is `console.throttle`;
the second factor `console.twofactor`.
"""

from __future__ import annotations

from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from rules.access import ROLE_TEAM_KINDS, ROLES
from store.models import Coordinator, Team

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
    coordinator: Coordinator | None = None  # the account, when the password was right
    tried: Coordinator | None = None  # the account the username names, if any (for the audit)
    reason: str = ""  # why it was refused, for the audit log (Chinese)
    rehash: str | None = None  # a new hash when the stored one used older parameters


def by_username(username: str):
    """The select of the account a username names (case does not matter)."""
    return select(Coordinator).where(func.lower(Coordinator.username) == username.strip().lower())


def check_login(session: Session, username: str, password: str) -> LoginResult:
    """Check a username and password (an unknown user takes as long as a known one)."""
    coordinator = session.scalar(by_username(username))
    ok = verify_password(coordinator.password_hash if coordinator else None, password)
    if coordinator is None:
        return LoginResult(reason="用户名不存在")
    if not ok:
        return LoginResult(tried=coordinator, reason="密码错误")
    if not coordinator.active:
        return LoginResult(tried=coordinator, reason="账号已停用")
    rehash = _hasher.hash(password) if _hasher.check_needs_rehash(coordinator.password_hash) else None
    return LoginResult(coordinator=coordinator, tried=coordinator, rehash=rehash)


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


def change_password(coordinator: Coordinator, new_password: str) -> None:
    """Set a new password; the caller ends the account's sessions (`SessionStore.end_all`)."""
    coordinator.password_hash = hash_password(new_password)
