"""Binding a coordinator's console account to their WeChat follower with a one-time code.

The console shows a 6-digit code (`issue`); the coordinator sends it in chat within
`VALID_FOR`; `redeem` links the sender's follower to the account. Codes live in SQL (a
web worker issues, a webhook worker redeems), one per coordinator, deleted when used.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from store.models import Coordinator, CoordinatorBindCode, Follower

VALID_FOR = timedelta(minutes=10)


class BindError(ValueError):
    """Why a code was refused; the message is fit for chat."""


def issue(session: Session, coordinator: Coordinator, now: datetime) -> CoordinatorBindCode:
    session.execute(delete(CoordinatorBindCode).where(
        (CoordinatorBindCode.coordinator_id == coordinator.id) | (CoordinatorBindCode.expires_at < now)))
    for _ in range(5):  # a clash with another live code: draw again
        row = CoordinatorBindCode(code=f"{secrets.randbelow(10**6):06d}", coordinator_id=coordinator.id,
                                  expires_at=now + VALID_FOR, created_at=now)
        try:
            with session.begin_nested():
                session.add(row)
                session.flush()
            return row
        except IntegrityError:
            continue
    raise BindError("暂时无法生成绑定码，请稍后再试。")


def redeem(session: Session, code: str, follower: Follower, now: datetime) -> Coordinator:
    row = session.scalar(select(CoordinatorBindCode).where(CoordinatorBindCode.code == code.strip()))
    if row is None or row.expires_at < now:
        raise BindError("绑定码不正确或已过期，请在管理后台重新生成。")
    coordinator = session.get(Coordinator, row.coordinator_id)
    other = session.scalar(select(Coordinator).where(Coordinator.follower_id == follower.id,
                                                     Coordinator.id != coordinator.id))
    if other is not None:
        raise BindError(f"您的微信已绑定管理员账号“{other.name}”，请先在管理后台解除绑定。")
    coordinator.follower_id = follower.id
    session.delete(row)
    session.flush()
    return coordinator


def unbind(session: Session, coordinator: Coordinator) -> None:
    coordinator.follower_id = None
