"""The Volunteer Bus (志愿巴士): routes, visits to communities, and who wants to hear.

A visit's `change_no` counts its announcements (0 = scheduled, then one per change or the
cancellation); every push about a visit carries it in its dedup key, so each subscriber
gets exactly one push per announcement.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from store.models.base import Base, utcnow
from store.models.district import Community

VISIT_STATES = ("scheduled", "cancelled")


class BusRoute(Base):
    """A bus line or programme (e.g. "志愿巴士进社区·东线") grouping regular visits."""

    __tablename__ = "bus_routes"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(64))
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class BusVisit(Base):
    __tablename__ = "bus_visits"
    __table_args__ = (Index("ix_bus_visits_community_start", "community_id", "starts_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    route_id: Mapped[int | None] = mapped_column(ForeignKey("bus_routes.id"))
    community_id: Mapped[int] = mapped_column(ForeignKey("communities.id"))
    starts_at: Mapped[datetime]  # aware UTC; shown in Beijing time
    ends_at: Mapped[datetime]
    place: Mapped[str] = mapped_column(String(128))
    services: Mapped[list] = mapped_column(JSON, default=list)  # codes from menus/bus_services.yaml
    state: Mapped[str] = mapped_column(String(16), default="scheduled")
    change_no: Mapped[int] = mapped_column(default=0)
    note: Mapped[str | None] = mapped_column(Text)  # the latest change or cancellation reason
    created_by: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)

    community: Mapped[Community] = relationship()
    route: Mapped[BusRoute | None] = relationship()


class BusSubscription(Base):
    """A follower wants every visit to `community` pushed (several communities allowed)."""

    __tablename__ = "bus_subscriptions"
    __table_args__ = (UniqueConstraint("follower_id", "community_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    follower_id: Mapped[int] = mapped_column(ForeignKey("followers.id", ondelete="CASCADE"), index=True)
    community_id: Mapped[int] = mapped_column(ForeignKey("communities.id"), index=True)
    source: Mapped[str] = mapped_column(String(16), default="chat")  # chat | qr | cli
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    community: Mapped[Community] = relationship()
