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

No poison pill. A receipt whose MsgID cannot be one of ours (not a number that fits the
column) is dropped at intake, with a log line and `volbot_receipts_rejected` in /metrics.
The scheduler applies a batch in one transaction and, if that fails, each receipt on its
own: one that still fails is set aside as a dead letter (store.dead_letters) and every
other receipt is applied; a queued item that cannot be read is set aside likewise. Only
when the database does not answer does the batch go back on the list.

A receipt can beat the worker's "sent" commit (WeChat answers the send, then the callback
races our UPDATE); such a receipt is parked in `push_receipts` and applied by the worker
right after it records the msgid, or by the scheduler's next pass.
"""

from __future__ import annotations

import json
import logging
import re
from datetime import datetime

from sqlalchemy import bindparam, delete, or_, select, update
from sqlalchemy.orm import Session

from store.dead_letters import digest, drain, printable, set_aside
from store.models import Follower, Push, PushReceipt
from store.models.pushes import MSGID_LENGTH
from telemetry.metrics import RECEIPTS_REJECTED

log = logging.getLogger("volbot.receipts")

USER_BLOCK = "user block"
QUEUE_KEY = "volbot:receipts"  # Redis list of [msgid, status, received at (ISO)]
BATCH = 2000  # receipts applied per transaction
DEAD_QUEUE = "receipts"  # dead letters of the queued receipts
PARKED_QUEUE = "parked-receipts"  # and of the parked ones (push_receipts)
MSGID = re.compile(rf"[0-9]{{1,{MSGID_LENGTH}}}")  # WeChat's msgid: a 64-bit number


def valid_msgid(msgid) -> bool:
    """Could this be the msgid of a push we sent? (Anything else can never match one.)"""
    return isinstance(msgid, str) and MSGID.fullmatch(msgid) is not None


def _accepted(msgid) -> bool:
    """Intake: a receipt whose MsgID cannot be valid is dropped here, logged and counted."""
    if valid_msgid(msgid):
        return True
    RECEIPTS_REJECTED.inc()
    log.warning("receipt with an invalid MsgID dropped at intake (%d characters)", len(msgid or ""))
    return False


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
    if not _accepted(msgid):
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


def _apply_parked(session: Session, msgid: str, now: datetime) -> None:
    row = session.execute(select(Push.id).where(Push.wechat_msgid == msgid)).first()
    if row is not None:
        apply_early_receipt(session, row.id, msgid, now)


def sweep_receipts(services, now: datetime) -> int:
    """Apply parked receipts whose push has been marked sent since (scheduler pass), all
    in one transaction, or one by one if that fails: one that fails alone is set aside as
    a dead letter and leaves `push_receipts` (else it would fail every pass)."""
    with services.db.transaction() as session:
        msgids = list(session.scalars(select(PushReceipt.wechat_msgid)
                                      .join(Push, Push.wechat_msgid == PushReceipt.wechat_msgid)))

    def apply_one(session, msgid):
        push_id = session.scalar(select(Push.id).where(Push.wechat_msgid == msgid))
        if push_id is not None:
            apply_early_receipt(session, push_id, msgid, now)

    def apply_all(session, ids):
        for msgid in ids:
            apply_one(session, msgid)

    done = drain(services, PARKED_QUEUE, msgids, apply_one, apply_all=apply_all, key=str, show=str)
    if done.dead:
        with services.db.transaction() as session:
            session.execute(delete(PushReceipt).where(PushReceipt.wechat_msgid.in_(done.dead)))
    if done.error is not None:
        raise done.error
    return done.applied


# ---- the webhook's fast path and the scheduler's bulk apply ---------------------------------

def queue_receipt(redis, msgid: str, status: str, now: datetime) -> None:
    """The webhook's whole work for a receipt: one RPUSH (applied by the next scheduler pass)."""
    if _accepted(msgid):
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


def _read(item: bytes) -> tuple[str, str, datetime]:
    """A queued receipt; ValueError if it is not one (written by something else, or damaged)."""
    try:
        msgid, status, at = json.loads(item)
        at = datetime.fromisoformat(at)
    except (ValueError, TypeError) as e:
        raise ValueError(f"unreadable queued receipt ({type(e).__name__})") from None
    if not valid_msgid(msgid) or not isinstance(status, str):
        raise ValueError("queued receipt with an invalid MsgID or status")
    return msgid, _status(status), at


def apply_queued_receipts(services, batch: int = BATCH, max_batches: int = 50) -> int:
    """Scheduler pass: take the queued receipts in batches (each taken and removed from the
    list atomically, so two schedulers never take one twice) and apply them, a batch in one
    transaction, or one by one when that fails (see the module doc: no poison pill). Only
    when the database stops answering do the untried ones go back on the list."""
    done = 0
    for _ in range(max_batches):
        with services.redis.pipeline() as pipe:  # MULTI/EXEC
            pipe.lrange(QUEUE_KEY, 0, batch - 1)
            pipe.ltrim(QUEUE_KEY, batch, -1)
            raw, _ = pipe.execute()
        if not raw:
            break
        readable = []
        for item in raw:
            try:
                readable.append((item, _read(item)))
            except ValueError as e:
                set_aside(services, DEAD_QUEUE, digest(item), printable(item), e, services.clock.now())
        result = drain(services, DEAD_QUEUE, readable, lambda session, r: record_receipts(session, [r[1]]),
                       apply_all=lambda session, rs: record_receipts(session, [r[1] for r in rs]),
                       key=lambda r: digest(r[0]), show=lambda r: printable(r[0]))
        done += result.applied
        if result.error is not None:
            services.redis.rpush(QUEUE_KEY, *(r[0] for r in result.left))
            raise result.error
        if len(raw) < batch:
            break
    return done
