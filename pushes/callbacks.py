"""Delivery receipts: WeChat's TEMPLATESENDJOBFINISH event, one per template message,
says whether it reached the user ("success", "failed:user block", "failed: system failed").

They come in bursts (thousands a second after a fan-out), so the webhook does not run them
through the turn pipeline (dedup claim, user lock, state, SQL): `queue_receipt` appends
each to a Redis list (one RPUSH) and the answer is `success` at once; the scheduler's every
pass takes the list in batches and applies them with a few statements per batch
(`apply_queued_receipts`). Receipts are idempotent (a conditional UPDATE), so WeChat's
retry of one is harmless. If Redis refuses the RPUSH the webhook records the receipt in SQL
directly (`record_receipt`, also the handler in handlers/push_receipts.py). A receipt lives
in Redis only until the next pass; losing a batch to a crash loses "delivered" marks, never
a push.

A receipt can beat the worker's "sent" commit (WeChat answers the send, then the callback
races our UPDATE); such a receipt is parked in `push_receipts` and applied by the worker
right after it records the msgid, or by the scheduler's next pass.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime

from sqlalchemy import bindparam, or_, select, update
from sqlalchemy.orm import Session

from store.models import Follower, Push, PushReceipt

log = logging.getLogger("volbot.receipts")

USER_BLOCK = "user block"
QUEUE_KEY = "volbot:receipts"  # Redis list of [msgid, status, received at (ISO)]
BATCH = 2000  # receipts applied per transaction


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


def _status(status: str | None) -> str:
    return (status or "").strip().lower()[:64]


def record_receipt(session: Session, msgid: str, status: str, now: datetime) -> None:
    """Apply a TEMPLATESENDJOBFINISH receipt to its push, or park it until the push is sent."""
    if not msgid:
        return
    status = _status(status)
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


# ---- the webhook's fast path and the scheduler's bulk apply ---------------------------------

def queue_receipt(redis, msgid: str, status: str, now: datetime) -> None:
    """The webhook's whole work for a receipt: one RPUSH (applied by the next scheduler pass)."""
    if msgid:
        redis.rpush(QUEUE_KEY, json.dumps([msgid, _status(status), now.isoformat()]))


def record_receipts(session: Session, receipts: list[tuple[str, str, datetime]]) -> int:
    """Apply many receipts in a few statements: one lookup, one UPDATE for all successes,
    failures one by one (rare), the rest parked. Returns how many were applied or parked."""
    latest: dict[str, tuple[str, datetime]] = {}
    for msgid, status, at in receipts:
        if msgid:
            latest[msgid] = (status, at)  # WeChat's retry of a receipt: the same receipt again
    if not latest:
        return 0
    found = {row.wechat_msgid: row for row in session.execute(
        select(Push.id, Push.openid, Push.wechat_msgid).where(Push.wechat_msgid.in_(list(latest))))}
    delivered = [{"b_id": row.id, "b_at": latest[msgid][1]} for msgid, row in found.items()
                 if latest[msgid][0] == "success"]
    if delivered:
        table = Push.__table__
        session.connection().execute(
            # (state = .. OR state = ..: an IN list cannot be used with executemany)
            table.update().where(table.c.id == bindparam("b_id"),
                                 or_(table.c.state == "sending", table.c.state == "sent"))
            .values(state="delivered", delivered_at=bindparam("b_at")), delivered)
    for msgid, row in found.items():
        status, at = latest[msgid]
        if status != "success":
            _apply(session, row.id, row.openid, status, at)
    early = [m for m in latest if m not in found]
    if early:
        parked = set(session.scalars(select(PushReceipt.wechat_msgid).where(PushReceipt.wechat_msgid.in_(early))))
        session.add_all(PushReceipt(wechat_msgid=m, status=latest[m][0], received_at=latest[m][1])
                        for m in early if m not in parked)
        session.flush()
    return len(latest)


def apply_queued_receipts(services, batch: int = BATCH, max_batches: int = 50) -> int:
    """Scheduler pass: take the queued receipts in batches (each taken and removed from the
    list atomically, so two schedulers never take one twice) and apply them. A batch whose
    transaction fails goes back on the list for the next pass."""
    done = 0
    for _ in range(max_batches):
        with services.redis.pipeline() as pipe:  # MULTI/EXEC
            pipe.lrange(QUEUE_KEY, 0, batch - 1)
            pipe.ltrim(QUEUE_KEY, batch, -1)
            raw, _ = pipe.execute()
        if not raw:
            break
        receipts = []
        for item in raw:
            try:
                msgid, status, at = json.loads(item)
                receipts.append((str(msgid), str(status), datetime.fromisoformat(at)))
            except (ValueError, TypeError):
                log.warning("unreadable queued receipt dropped")
        try:
            with services.db.transaction() as session:
                done += record_receipts(session, receipts)
        except Exception:
            services.redis.rpush(QUEUE_KEY, *raw)
            raise
        if len(raw) < batch:
            break
    return done
