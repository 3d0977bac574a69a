"""Outbound pushes (template messages, subscribe notices, customer-service texts): a row per push is written before anything is sent.

The `dedup_key` is unique: the same logical push (e.g. "bus:visit:12:changed:3:openid")
is recorded, and therefore sent, at most once.

Life of a row (see `pushes.worker`): pending → queued (a job id on the RQ queue) →
sending (claimed by one worker under a lease) → sent (WeChat accepted it; `wechat_msgid`)
→ delivered / failed (the TEMPLATESENDJOBFINISH receipt). A transient error puts the row
back to pending with a later `due_at`; a permanent one ends it in failed.

`client_msg_id` is what WeChat dedups a resend by (same openid + id within 10 minutes). It is
random, made at insert, never derived from `id`: a restore of an earlier backup rewinds the
id sequence, and a new push reusing an old id must not look like a resend of the old one.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import JSON, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from store.models.base import Base, utcnow

# held: WeChat took it but holds it for review (40252); it delivers or blocks it later.
PUSH_STATES = ("pending", "queued", "sending", "sent", "held", "delivered", "failed", "cancelled")
MSGID_LENGTH = 32  # WeChat's msgid (a 64-bit number) as text; receipts' MsgID must fit


def new_client_msg_id() -> str:
    return uuid.uuid4().hex


class Push(Base):
    __tablename__ = "pushes"
    __table_args__ = (Index("ix_pushes_state_due", "state", "due_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    dedup_key: Mapped[str] = mapped_column(String(191), unique=True)
    openid: Mapped[str] = mapped_column(String(64), index=True)
    kind: Mapped[str] = mapped_column(String(32), index=True)  # e.g. bus_visit, order_update
    # template | subscribe | customer_service (menus/templates.yaml, set when recorded)
    channel: Mapped[str] = mapped_column(String(24), default="template", server_default="template")
    title: Mapped[str] = mapped_column(String(64))
    data: Mapped[dict] = mapped_column(JSON, default=dict)  # template fields, in order
    url: Mapped[str | None] = mapped_column(String(512))
    batch: Mapped[str | None] = mapped_column(String(64), index=True)  # a fan-out's id
    state: Mapped[str] = mapped_column(String(16), default="pending")
    due_at: Mapped[datetime] = mapped_column(default=utcnow)
    attempts: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    # Unique for ever (see the module doc): WeChat's dedup key of this push.
    client_msg_id: Mapped[str] = mapped_column(String(32), default=new_client_msg_id)
    wechat_msgid: Mapped[str | None] = mapped_column(String(MSGID_LENGTH), index=True)
    sent_at: Mapped[datetime | None]
    delivered_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # The queue job that carries this row, and when it was queued (a job lost with Redis
    # is found again from these).
    job_id: Mapped[str | None] = mapped_column(String(64), index=True)
    queued_at: Mapped[datetime | None]
    # A worker's claim: who may send until `lease_until`; `claimed_at` is when this
    # attempt began (WeChat dedups a resend with the same client_msg_id for 10 minutes).
    claimed_at: Mapped[datetime | None]
    lease_until: Mapped[datetime | None]


class PushReceipt(Base):
    """A TEMPLATESENDJOBFINISH that arrived before its push was marked sent (the worker
    or the next scheduler pass applies it), so no receipt is lost to that race."""

    __tablename__ = "push_receipts"

    wechat_msgid: Mapped[str] = mapped_column(String(MSGID_LENGTH), primary_key=True)
    status: Mapped[str] = mapped_column(String(64))
    received_at: Mapped[datetime] = mapped_column(default=utcnow)


class DeadLetter(Base):
    """An item a queue drainer (scheduler, worker) could not apply, set aside so that the
    items after it are applied (see store.dead_letters). Kept in SQL, not Redis: it is the
    only trace of a fact we failed to record (a delivery receipt WeChat will not send
    again), and an operator must still find it after Redis restarts or is flushed."""

    __tablename__ = "dead_letters"
    __table_args__ = (UniqueConstraint("queue", "item_key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    queue: Mapped[str] = mapped_column(String(32), index=True)  # e.g. receipts, push-outcomes
    item_key: Mapped[str] = mapped_column(String(64))  # one row per item, however often it fails
    item: Mapped[str] = mapped_column(Text)  # the item as queued (escaped to printable text)
    error: Mapped[str] = mapped_column(Text)  # the last failure
    failures: Mapped[int] = mapped_column(default=1)
    first_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_at: Mapped[datetime] = mapped_column(default=utcnow)
