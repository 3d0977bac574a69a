"""Followers of the account (one per openid) and messages they leave for coordinators."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from store.models.base import Base, utcnow
from store.models.district import Community, Team
from store.sealing import PHONE, SealedText, keep_phone_lookups


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
    phone: Mapped[str | None] = mapped_column("phone_enc", SealedText(PHONE))  # store.sealing
    phone_hash: Mapped[str | None] = mapped_column(String(64))
    phone_last4: Mapped[str | None] = mapped_column(String(4))
    last_lat: Mapped[float | None]
    last_lng: Mapped[float | None]
    last_location_at: Mapped[datetime | None]
    # Pushes stop for a follower who refused them or is unknown to WeChat.
    push_blocked: Mapped[str | None] = mapped_column(String(64))
    # When they last sent us a message (text, voice, location, picture: not an event), to
    # the minute: WeChat lets the account answer with customer-service messages for 48 hours
    # after it (rules.inbox). Recorded only on turns that load the row anyway
    # (rules.followers.TurnRecords), so it is a lower bound: never later than the truth.
    last_message_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    community: Mapped[Community | None] = relationship()


keep_phone_lookups(Follower.phone)


class CoordinatorMessage(Base):
    """A note left for a human after a user got stuck in a form (3 wrong answers): routed
    to the team responsible for the resident's community (`team_id`; the brigade when
    none), answered in chat and/or marked handled there, escalated one level up while
    nobody answers (rules.inbox)."""

    __tablename__ = "coordinator_messages"
    __table_args__ = (Index("ix_coordinator_messages_escalate_at", "escalate_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    follower_id: Mapped[int | None] = mapped_column(ForeignKey("followers.id", ondelete="SET NULL"), index=True)
    flow: Mapped[str] = mapped_column(String(64))
    step: Mapped[str] = mapped_column(String(64))
    text: Mapped[str] = mapped_column(Text)
    # The team it was routed to (NULL: left before routing existed; the district sees it).
    team_id: Mapped[int | None] = mapped_column(ForeignKey("teams.id"), index=True)
    handled: Mapped[bool] = mapped_column(default=False)
    handled_at: Mapped[datetime | None]
    handled_by: Mapped[int | None] = mapped_column(ForeignKey("coordinators.id", ondelete="SET NULL"))
    note: Mapped[str | None] = mapped_column(String(200))
    # The answer sent to the resident as a customer-service message.
    answer: Mapped[str | None] = mapped_column(Text)
    answered_at: Mapped[datetime | None]
    answered_by: Mapped[int | None] = mapped_column(ForeignKey("coordinators.id", ondelete="SET NULL"))
    # Escalation: how many levels above `team_id` have been told, when last, and when the
    # next level is due (NULL: answered, handled, or no level left above).
    level: Mapped[int] = mapped_column(default=0, server_default="0")
    escalated_at: Mapped[datetime | None]
    escalate_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    follower: Mapped[Follower | None] = relationship()
    team: Mapped[Team | None] = relationship()
