"""Recording a push: the one call every journey uses to tell someone something later.

`notify` writes a `Push` row in the caller's transaction. Nothing is sent here: the
worker sends rows that are due, so a push recorded in a rolled-back transaction never goes
out, and the same `dedup_key` is recorded (and so sent) at most once.

The scheduler (`volbot scheduler`) looks for due rows every second, so a push recorded
during a webhook turn goes out within about a second of the commit. `notify_many` records
a fan-out (a bus visit to 40,000 subscribers) in a few statements instead of 40,000.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from menus.notices import default_catalog
from store.models import Push


def channel_of(kind: str) -> str:
    """The channel `kind` goes by (menus/templates.yaml); an undeclared kind is refused
    here, where it is recorded, not found out when a worker cannot send it."""
    return default_catalog().channel(kind)


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
    push = Push(openid=openid, kind=kind, channel=channel_of(kind), title=title, data=dict(fields),
                dedup_key=dedup_key, url=url, batch=batch)
    if due_at is not None:
        push.due_at = due_at
    # A savepoint so a concurrent insert of the same key only loses this row, not the turn.
    try:
        with session.begin_nested():
            session.add(push)
            session.flush()
    except Exception as e:  # IntegrityError from either database
        if "unique" in str(e).lower() or "duplicate" in str(e).lower():
            return None
        raise
    return push


def notify_many(session: Session, pushes: list[dict], *, chunk: int = 1000) -> int:
    """Record many pushes (each a dict of `notify`'s keyword arguments) in bulk; those whose
    `dedup_key` was recorded before are skipped. Returns how many were recorded.

    Meant for fan-outs run by one coordinator command at a time; a concurrent fan-out of the
    same keys fails on the unique index rather than sending twice."""
    recorded = 0
    for i in range(0, len(pushes), chunk):
        part = pushes[i:i + chunk]
        keys = [p["dedup_key"] for p in part]
        seen = set(session.scalars(select(Push.dedup_key).where(Push.dedup_key.in_(keys))))
        rows, batch_keys = [], set()
        for p in part:
            if p["dedup_key"] in seen or p["dedup_key"] in batch_keys:
                continue
            batch_keys.add(p["dedup_key"])
            row = {"openid": p["openid"], "kind": p["kind"], "channel": channel_of(p["kind"]),
                   "title": p["title"], "data": dict(p["fields"]),
                   "dedup_key": p["dedup_key"], "url": p.get("url"), "batch": p.get("batch"),
                   "state": "pending", "attempts": 0}
            if p.get("due_at") is not None:
                row["due_at"] = p["due_at"]
            rows.append(row)
        if rows:
            session.execute(insert(Push), rows)
            recorded += len(rows)
    return recorded


def withdraw(session: Session, *where, reason: str) -> int:
    """Cancel the pushes matching `where` that no worker has started sending (pending or
    queued; a queued job finds its row cancelled and skips it). Returns how many."""
    from sqlalchemy import update

    result = session.execute(
        update(Push).where(Push.state.in_(("pending", "queued")), *where)
        .values(state="cancelled", last_error=reason)
        .execution_options(synchronize_session=False))
    return result.rowcount or 0
