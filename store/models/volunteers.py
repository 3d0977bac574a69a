"""Volunteers, coordinators and service-hour records (the legal record of service).

Hour records only grow: a correction is a rejection plus a new record, never an edit of
minutes. The spendable time bank is a separate ledger (see `store.models.timebank`).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from store.models.base import Base, utcnow
from store.models.district import Team
from store.models.followers import Follower
from store.sealing import PHONE, TOTP_SECRET, SealedText, keep_phone_lookups

VOLUNTEER_STATES = ("pending", "active", "rejected", "suspended")
HOUR_SOURCES = ("activity", "order", "manual")
HOUR_STATES = ("pending", "approved", "rejected")


class Volunteer(Base):
    __tablename__ = "volunteers"

    id: Mapped[int] = mapped_column(primary_key=True)
    number: Mapped[str] = mapped_column(String(16), unique=True)  # e.g. KW2026000042
    # Unlinked (NULL) when the follower unsubscribes; the record stays under the number.
    follower_id: Mapped[int | None] = mapped_column(
        ForeignKey("followers.id", ondelete="SET NULL"), unique=True
    )
    name: Mapped[str] = mapped_column(String(32))
    # Personal data (docs/privacy.md): phones and the ID number only as ciphertext, keyed
    # hash and last four; of the birth date only the year.
    phone: Mapped[str] = mapped_column("phone_enc", SealedText(PHONE))
    phone_hash: Mapped[str] = mapped_column(String(64), index=True)
    phone_last4: Mapped[str] = mapped_column(String(4), index=True)
    id_number_enc: Mapped[str] = mapped_column(String(255))  # rules.pii.seal_id_number
    id_number_hash: Mapped[str] = mapped_column(String(64), unique=True)  # keyed hash
    id_number_last4: Mapped[str] = mapped_column(String(4))  # for masked display
    birth_year: Mapped[int]
    guardian_name: Mapped[str | None] = mapped_column(String(32))
    guardian_phone: Mapped[str | None] = mapped_column("guardian_phone_enc", SealedText(PHONE))
    guardian_phone_hash: Mapped[str | None] = mapped_column(String(64))
    guardian_phone_last4: Mapped[str | None] = mapped_column(String(4))
    team_id: Mapped[int] = mapped_column(ForeignKey("teams.id"), index=True)
    skills: Mapped[list] = mapped_column(JSON, default=list)  # needs-menu category codes
    availability: Mapped[list] = mapped_column(JSON, default=list)  # e.g. ["weekday_am"]
    state: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    consent_at: Mapped[datetime | None]
    consent_version: Mapped[str | None] = mapped_column(String(16))  # privacy notice consented to
    decided_at: Mapped[datetime | None]
    decided_by: Mapped[int | None] = mapped_column(ForeignKey("coordinators.id"))
    decision_reason: Mapped[str | None] = mapped_column(String(255))
    # Highest star level reached (0-5), kept with the `VolunteerStar` rows that record when.
    star_level: Mapped[int] = mapped_column(default=0)
    is_demo: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    team: Mapped[Team] = relationship()
    follower: Mapped[Follower | None] = relationship()


keep_phone_lookups(Volunteer.phone)
keep_phone_lookups(Volunteer.guardian_phone)


class VolunteerStar(Base):
    """The moment a volunteer reached a star level; one row per level, never removed."""

    __tablename__ = "volunteer_stars"
    __table_args__ = (UniqueConstraint("volunteer_id", "level"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    volunteer_id: Mapped[int] = mapped_column(ForeignKey("volunteers.id"))
    level: Mapped[int]
    approved_minutes: Mapped[int]  # the approved total when it was reached
    reached_at: Mapped[datetime]
    hour_record_id: Mapped[int | None] = mapped_column(ForeignKey("hour_records.id"))


class VolunteerSerial(Base):
    """The next serial per year for volunteer numbers; taken under a row lock."""

    __tablename__ = "volunteer_serials"

    year: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    last: Mapped[int] = mapped_column(default=0)


class Coordinator(Base):
    """A coordinator of a team: acts on that team's subtree only."""

    __tablename__ = "coordinators"

    id: Mapped[int] = mapped_column(primary_key=True)
    team_id: Mapped[int] = mapped_column(ForeignKey("teams.id"), index=True)
    name: Mapped[str] = mapped_column(String(32))
    role: Mapped[str] = mapped_column(String(16), default="squad")  # brigade|detachment|squad
    follower_id: Mapped[int | None] = mapped_column(
        ForeignKey("followers.id", ondelete="SET NULL"), unique=True
    )
    username: Mapped[str | None] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str | None] = mapped_column(String(255))
    active: Mapped[bool] = mapped_column(default=True)
    is_demo: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # The second factor (console/twofactor.py): the TOTP secret, sealed like the phones (so
    # `volbot pii rotate` re-seals it too); set once enrolment is confirmed with a first code.
    # The last time step a code was accepted for, so a code cannot be used twice.
    totp_secret: Mapped[str | None] = mapped_column(SealedText(TOTP_SECRET))
    totp_enabled_at: Mapped[datetime | None]
    totp_last_step: Mapped[int | None]

    team: Mapped[Team] = relationship()
    follower: Mapped[Follower | None] = relationship()


class HourRecord(Base):
    __tablename__ = "hour_records"
    __table_args__ = (
        UniqueConstraint("source", "source_ref", "volunteer_id"),
        Index("ix_hour_records_volunteer_state", "volunteer_id", "state", "started_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    volunteer_id: Mapped[int] = mapped_column(ForeignKey("volunteers.id"))
    source: Mapped[str] = mapped_column(String(16))  # one of HOUR_SOURCES
    source_ref: Mapped[str] = mapped_column(String(64))  # e.g. "shift:12", "order:D2026…"
    minutes: Mapped[int]  # credited service time: travel is never included
    travel_minutes: Mapped[int] = mapped_column(default=0)  # kept for the record, not counted
    started_at: Mapped[datetime]
    ended_at: Mapped[datetime]
    description: Mapped[str] = mapped_column(Text, default="")
    flagged: Mapped[str | None] = mapped_column(String(128))  # why it needs a closer look
    recorded_by: Mapped[int | None] = mapped_column(ForeignKey("coordinators.id"))
    state: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    decided_by: Mapped[int | None] = mapped_column(ForeignKey("coordinators.id"))
    decided_at: Mapped[datetime | None]
    reason: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    volunteer: Mapped[Volunteer] = relationship()
