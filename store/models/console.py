"""What only the coordinators' console keeps: issued certificates of service, the
one-time codes that bind a console account to its owner's WeChat follower, and the
recovery codes of the accounts' second factor.

A certificate of service (志愿服务记录证明) gets a number that is never reused, and the
figures printed on it are kept, so a certificate shown later can be checked against
what was issued.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Date, ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from store.models.base import Base, utcnow


class ServiceCertificate(Base):
    __tablename__ = "service_certificates"

    id: Mapped[int] = mapped_column(primary_key=True)
    number: Mapped[str] = mapped_column(String(32), unique=True)  # e.g. KWZM2026000012
    volunteer_id: Mapped[int] = mapped_column(ForeignKey("volunteers.id"), index=True)
    team_id: Mapped[int] = mapped_column(ForeignKey("teams.id"))  # the issuing team
    issued_by: Mapped[int | None] = mapped_column(ForeignKey("coordinators.id", ondelete="SET NULL"))
    minutes: Mapped[int]  # approved minutes in the period, as printed
    period_start: Mapped[date | None] = mapped_column(Date)
    period_end: Mapped[date | None] = mapped_column(Date)
    services: Mapped[str] = mapped_column(Text, default="")  # what the service was, as printed
    issued_on: Mapped[date] = mapped_column(Date)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # What anyone checks on the public verify page (/m/verify/<code>): random, not the number,
    # so numbers cannot be walked through. Certificates issued before it have none.
    verify_code: Mapped[str | None] = mapped_column(String(16), unique=True)
    revoked_at: Mapped[datetime | None]
    revoked_reason: Mapped[str | None] = mapped_column(String(200))



class CoordinatorBindCode(Base):
    """A one-time code a coordinator shows in the console and sends in chat, which binds
    their console account to the WeChat follower who sent it (pushes and chat approvals
    then reach them). Valid for a few minutes; deleted when used or replaced."""

    __tablename__ = "coordinator_bind_codes"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(8), unique=True)
    coordinator_id: Mapped[int] = mapped_column(ForeignKey("coordinators.id", ondelete="CASCADE"), index=True)
    expires_at: Mapped[datetime]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class CoordinatorRecoveryCode(Base):
    """A one-use recovery code of a coordinator's second factor (for a lost phone). Only
    its SHA-256 is kept: the codes are random (50 bits), so a fast hash is enough, and the
    plain code is shown once, when issued."""

    __tablename__ = "coordinator_recovery_codes"

    id: Mapped[int] = mapped_column(primary_key=True)
    coordinator_id: Mapped[int] = mapped_column(ForeignKey("coordinators.id", ondelete="CASCADE"), index=True)
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    used_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
