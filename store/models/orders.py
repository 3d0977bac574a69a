"""Residents' service orders (点单), their history, the daily number counter and the
needs menu a district imported.

An order keeps a snapshot of the sub-category it was made for (code and names), so a later
catalog import never changes what an old order says. Personal data (phone, address,
position, what was written) is erased when the resident unsubscribes and the order is
closed; `erase_on_close` marks an open order whose data goes the moment it closes.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import JSON, Date, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from store.models.base import Base, utcnow
from store.models.district import Community
from store.models.followers import Follower
from store.sealing import PHONE, SealedText, keep_phone_lookups


class Order(Base):
    __tablename__ = "orders"
    __table_args__ = (
        Index("ix_orders_follower_created", "follower_id", "created_at"),
        Index("ix_orders_status_created", "status", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    number: Mapped[str] = mapped_column(String(16), unique=True)  # D20261128-0042
    # One order per filled-in form: a second 确认 of the same form finds this one.
    form_token: Mapped[str | None] = mapped_column(String(64), unique=True)
    follower_id: Mapped[int | None] = mapped_column(ForeignKey("followers.id", ondelete="SET NULL"))
    channel: Mapped[str] = mapped_column(String(16), default="wechat")
    # What was ordered (a snapshot of the needs menu at ordering time).
    sub_code: Mapped[str] = mapped_column(String(8), index=True)
    sub_name: Mapped[str] = mapped_column(String(32))
    category_code: Mapped[str] = mapped_column(String(8))
    category_name: Mapped[str] = mapped_column(String(32))
    mode: Mapped[str] = mapped_column(String(8), default="onsite")
    minutes: Mapped[int] = mapped_column(default=60)
    # Personal data, erased on unsubscribe once the order is closed.
    description: Mapped[str | None] = mapped_column(Text)
    address: Mapped[str | None] = mapped_column(String(200))
    lat: Mapped[float | None]
    lng: Mapped[float | None]
    phone: Mapped[str | None] = mapped_column("phone_enc", SealedText(PHONE))  # store.sealing
    phone_hash: Mapped[str | None] = mapped_column(String(64))
    phone_last4: Mapped[str | None] = mapped_column(String(4))
    community_id: Mapped[int | None] = mapped_column(ForeignKey("communities.id"), index=True)
    # When the resident would like it: a day and a part of it, or an exact time.
    preferred_date: Mapped[date] = mapped_column(Date)
    preferred_slot: Mapped[str] = mapped_column(String(8))  # am | pm | eve | day
    preferred_at: Mapped[datetime | None]  # an exact time, when one was said
    status: Mapped[str] = mapped_column(String(16), default="submitted")
    cancel_reason: Mapped[str | None] = mapped_column(String(200))
    rating: Mapped[int | None]
    rating_comment: Mapped[str | None] = mapped_column(Text)
    rated_at: Mapped[datetime | None]
    erase_on_close: Mapped[bool] = mapped_column(default=False)
    erased_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    closed_at: Mapped[datetime | None]

    follower: Mapped[Follower | None] = relationship()
    community: Mapped[Community | None] = relationship()
    events: Mapped[list["OrderEvent"]] = relationship(
        back_populates="order", order_by="OrderEvent.id", cascade="all, delete-orphan"
    )


keep_phone_lookups(Order.phone)


class OrderEvent(Base):
    """One status change of an order: from what, to what, when, by whom and why."""

    __tablename__ = "order_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime]
    from_status: Mapped[str | None] = mapped_column(String(16))
    to_status: Mapped[str] = mapped_column(String(16))
    actor_kind: Mapped[str] = mapped_column(String(16))  # resident|volunteer|coordinator|system
    actor_id: Mapped[int | None]
    reason: Mapped[str | None] = mapped_column(String(255))

    order: Mapped[Order] = relationship(back_populates="events")


class OrderSerial(Base):
    """The last order number given out on a local (Asia/Shanghai) day."""

    __tablename__ = "order_serials"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    last: Mapped[int] = mapped_column(default=0)


class CatalogVersion(Base):
    """A needs menu imported with `volbot import catalog` or published from a console draft.
    In use: the newest whose `effective_from` (NULL: at once) has come (rules.orders)."""

    __tablename__ = "catalog_versions"

    id: Mapped[int] = mapped_column(primary_key=True)
    district: Mapped[str] = mapped_column(String(64), default="")
    data: Mapped[dict] = mapped_column(JSON)
    sha256: Mapped[str] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(255), default="")
    imported_at: Mapped[datetime] = mapped_column(default=utcnow)
    effective_from: Mapped[datetime | None]
    published_by: Mapped[int | None] = mapped_column(ForeignKey("coordinators.id", ondelete="SET NULL"))
