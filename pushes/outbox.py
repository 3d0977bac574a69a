"""Recording a push: the one call every journey uses to tell someone something later.

`notify` writes a `Push` row in the caller's transaction. Nothing is sent here: the
worker sends rows that are due, so a push recorded in a rolled-back transaction never goes
out, and the same `dedup_key` is recorded (and so sent) at most once.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from store.models import Push


def notify(
    session: Session,
    *,
    openid: str,
    kind: str,
    title: str,
    fields: dict[str, str],
    dedup_key: str,
    due_at: datetime | None = None,
    url: str | None = None,
    batch: str | None = None,
) -> Push | None:
    """Record a push to `openid`; returns None when `dedup_key` was recorded before."""
    existing = session.scalar(select(Push.id).where(Push.dedup_key == dedup_key))
    if existing is not None:
        return None
    push = Push(openid=openid, kind=kind, title=title, data=dict(fields), dedup_key=dedup_key,
                url=url, batch=batch)
    if due_at is not None:
        push.due_at = due_at
    # A savepoint so a concurrent insert of the same key only loses this row, not the turn.
    try:
        with session.begin_nested():
            session.add(push)
            session.flush()
    except Exception as e:  # noqa: BLE001 - IntegrityError from either database
        if "unique" in str(e).lower() or "duplicate" in str(e).lower():
            return None
        raise
    return push
