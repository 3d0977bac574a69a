"""Outbound pushes (template messages): a row per push is written before anything is sent.

The `dedup_key` is unique: the same logical push (e.g. "bus:visit:12:changed:3:openid")
is recorded, and therefore sent, at most once.

Life of a row (see `pushes.worker`): pending → queued (a job id on the RQ queue) →
sending (claimed by one worker under a lease) → sent (WeChat accepted it; `wechat_msgid`)
→ delivered / failed (the TEMPLATESENDJOBFINISH receipt). A transient error puts the row
back to pending with a later `due_at`; a permanent one ends it in failed.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from store.models.base import Base, utcnow

PUSH_STATES = ("pending", "queued", "sending", "sent", "delivered", "failed", "cancelled")


class Push(Base):
    __tablename__ = "pushes"
    __table_args__ = (Index("ix_pushes_state_due", "state", "due_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    dedup_key: Mapped[str] = mapped_column(String(191), unique=True)
    openid: Mapped[str] = mapped_column(String(64), index=True)
    kind: Mapped[str] = mapped_column(String(32), index=True)  # e.g. bus_visit, order_update
    title: Mapped[str] = mapped_column(String(64))
    data: Mapped[dict] = mapped_column(JSON, default=dict)  # template fields, in order
    url: Mapped[str | None] = mapped_column(String(512))
    batch: Mapped[str | None] = mapped_column(String(64), index=True)  # a fan-out's id
    state: Mapped[str] = mapped_column(String(16), default="pending")
    due_at: Mapped[datetime] = mapped_column(default=utcnow)
    attempts: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    wechat_msgid: Mapped[str | None] = mapped_column(String(32), index=True)
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

    wechat_msgid: Mapped[str] = mapped_column(String(32), primary_key=True)
    status: Mapped[str] = mapped_column(String(64))
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
