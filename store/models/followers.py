"""Followers of the account (one per openid) and messages they leave for coordinators."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from store.models.base import Base, utcnow
from store.models.district import Community


class Follower(Base):
    """Someone who follows the account. Personal fields are erased on unsubscribe."""

    __tablename__ = "followers"

    id: Mapped[int] = mapped_column(primary_key=True)
    openid: Mapped[str] = mapped_column(String(64), unique=True)
    subscribed: Mapped[bool] = mapped_column(default=True)
    subscribed_at: Mapped[datetime | None]
    unsubscribed_at: Mapped[datetime | None]
    # The QR scene they followed through (e.g. "st:12", "cm:KW001"), kept for journeys.
    scene: Mapped[str | None] = mapped_column(String(64))
    community_id: Mapped[int | None] = mapped_column(ForeignKey("communities.id"))
    # Personal data (erased on unsubscribe).
    phone: Mapped[str | None] = mapped_column(String(32))
    last_lat: Mapped[float | None]
    last_lng: Mapped[float | None]
    last_location_at: Mapped[datetime | None]
    # Pushes stop for a follower who refused them or is unknown to WeChat.
    push_blocked: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    community: Mapped[Community | None] = relationship()


class CoordinatorMessage(Base):
    """A note left for a human after a user got stuck in a form (3 wrong answers)."""

    __tablename__ = "coordinator_messages"

    id: Mapped[int] = mapped_column(primary_key=True)
    follower_id: Mapped[int | None] = mapped_column(ForeignKey("followers.id", ondelete="SET NULL"))
    flow: Mapped[str] = mapped_column(String(64))
    step: Mapped[str] = mapped_column(String(64))
    text: Mapped[str] = mapped_column(Text)
    handled: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
