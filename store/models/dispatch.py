"""Dispatch: the offers of an order to volunteers, and orders paid with time.

An `Offer` is one volunteer asked to take one order, with the score and reasons the ranking
gave them (so a coordinator can see later why they were asked). The accepted offer is the
assignment: it carries the service itself (started, finished, minutes claimed and credited)
and the deadline for the resident's confirmation. Deadlines (`due_at`, `confirm_due_at`)
are SQL columns the scheduler's due-work pass looks for: nothing is timed in memory.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from store.models.base import Base, utcnow
from store.models.orders import Order
from store.models.volunteers import Volunteer

OFFER_STATES = ("offered", "accepted", "declined", "expired", "withdrawn")
PAYMENT_STATES = ("pending", "paid", "failed", "cancelled")


class Offer(Base):
    __tablename__ = "dispatch_offers"
    __table_args__ = (
        Index("ix_dispatch_offers_state_due", "state", "due_at"),
        Index("ix_dispatch_offers_volunteer_state", "volunteer_id", "state"),
        Index("ix_dispatch_offers_order_state", "order_id", "state"),
        Index("ix_dispatch_offers_confirm_due", "confirm_due_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"))
    volunteer_id: Mapped[int] = mapped_column(ForeignKey("volunteers.id"))
    state: Mapped[str] = mapped_column(String(16), default="offered")  # one of OFFER_STATES
    offered_at: Mapped[datetime]
    due_at: Mapped[datetime | None]  # an unanswered offer goes to the next candidate then
    decided_at: Mapped[datetime | None]
    score: Mapped[int] = mapped_column(default=0)
    reasons: Mapped[list] = mapped_column(JSON, default=list)
    assigned_by: Mapped[int | None] = mapped_column(ForeignKey("coordinators.id", ondelete="SET NULL"))
    note: Mapped[str | None] = mapped_column(String(255))  # why declined / withdrawn / assigned
    # The service, on the accepted offer.
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    claimed_minutes: Mapped[int | None]  # what the volunteer said they spent
    minutes: Mapped[int | None]  # what is credited: the claim, capped unless a coordinator approved more
    minutes_cap: Mapped[int | None]
    confirm_due_at: Mapped[datetime | None]  # no answer from the resident by then: confirmed
    hour_record_id: Mapped[int | None] = mapped_column(ForeignKey("hour_records.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    order: Mapped[Order] = relationship()
    volunteer: Mapped[Volunteer] = relationship()


class TimePayment(Base):
    """An order the resident chose to pay with time-bank minutes: debited on confirmation."""

    __tablename__ = "dispatch_time_payments"

    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"), unique=True)
    # Whose balance pays: a time-bank account (a volunteer's, or a resident's own minutes);
    # `volunteer_id` names the volunteer when it is a volunteer's.
    account_id: Mapped[int | None] = mapped_column(ForeignKey("time_accounts.id"))
    volunteer_id: Mapped[int | None] = mapped_column(ForeignKey("volunteers.id"))
    payer_follower_id: Mapped[int | None] = mapped_column(ForeignKey("followers.id", ondelete="SET NULL"))
    minutes: Mapped[int]
    state: Mapped[str] = mapped_column(String(16), default="pending")  # one of PAYMENT_STATES
    tx_id: Mapped[int | None] = mapped_column(ForeignKey("time_transactions.id"))
    note: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    decided_at: Mapped[datetime | None]
