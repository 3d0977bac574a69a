"""Delivery receipts: WeChat's TEMPLATESENDJOBFINISH event, one per template message,
says whether it reached the user ("success", "failed:user block", "failed: system failed").

The webhook hands each receipt to `record_receipt` (handlers/push_receipts.py) and answers
at once. A receipt can beat the worker's "sent" commit (WeChat answers the send, then the
callback races our UPDATE); such a receipt is parked in `push_receipts` and applied by the
worker right after it records the msgid, or by the scheduler's next pass.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from store.models import Follower, Push, PushReceipt

USER_BLOCK = "user block"


def _apply(session: Session, push_id: int, openid: str, status: str, now: datetime) -> None:
    if status == "success":
        session.execute(update(Push).where(Push.id == push_id, Push.state.in_(("sending", "sent")))
                        .values(state="delivered", delivered_at=now)
                        .execution_options(synchronize_session=False))
        return
    session.execute(update(Push).where(Push.id == push_id, Push.state.in_(("sending", "sent", "delivered")))
                    .values(state="failed", last_error=f"receipt: {status}"[:200])
                    .execution_options(synchronize_session=False))
    if USER_BLOCK in status:
        session.execute(update(Follower).where(Follower.openid == openid, Follower.push_blocked.is_(None))
                        .values(push_blocked="43101 refused notices")
                        .execution_options(synchronize_session=False))


def record_receipt(session: Session, msgid: str, status: str, now: datetime) -> None:
    """Apply a TEMPLATESENDJOBFINISH receipt to its push, or park it until the push is sent."""
    if not msgid:
        return
    status = (status or "").strip().lower()[:64]
    row = session.execute(select(Push.id, Push.openid).where(Push.wechat_msgid == msgid)).first()
    if row is not None:
        _apply(session, row.id, row.openid, status, now)
        return
    if session.get(PushReceipt, msgid) is None:
        session.add(PushReceipt(wechat_msgid=msgid, status=status, received_at=now))
        session.flush()


def apply_early_receipt(session: Session, push_id: int, msgid: str, now: datetime) -> None:
    """Called in the transaction that records `msgid` on a push."""
    receipt = session.get(PushReceipt, msgid)
    if receipt is not None:
        openid = session.scalar(select(Push.openid).where(Push.id == push_id))
        _apply(session, push_id, openid, receipt.status, now)
        session.delete(receipt)


def sweep_receipts(session: Session, now: datetime) -> int:
    """Apply parked receipts whose push has been marked sent since (scheduler pass)."""
    rows = session.execute(select(PushReceipt, Push.id, Push.openid)
                           .join(Push, Push.wechat_msgid == PushReceipt.wechat_msgid)).all()
    for receipt, push_id, openid in rows:
        _apply(session, push_id, openid, receipt.status, now)
        session.delete(receipt)
    return len(rows)
