"""Recurring shifts and call-outs.

A shift pattern (排班模板) is a coordinator's weekly (or every-n-weeks) rule for an
activity at a place: weekdays, times, capacity, minimum, team. `rules.attendance`
materialises it as one activity with one shift per day for the next weeks. A call-out (召集)
asks an opted-in volunteer to fill a shift at risk or take an order nobody accepted; a
volunteer gets at most one a day (the unique constraint, so two schedulers cannot both
send).
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import JSON, Date, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from store.models.activities import Project, Shift
from store.models.base import Base, utcnow
from store.models.district import Team
from store.models.orders import Order
from store.models.places import DEFAULT_RADIUS_M, Place
from store.models.volunteers import Volunteer


class ShiftPattern(Base):
    __tablename__ = "shift_patterns"

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"), index=True)
    # The team whose volunteers are called out for it (default: the project's team).
    team_id: Mapped[int | None] = mapped_column(ForeignKey("teams.id"), index=True)
    title: Mapped[str] = mapped_column(String(128))
    description: Mapped[str] = mapped_column(Text, default="")
    place_id: Mapped[int | None] = mapped_column(ForeignKey("places.id"))
    address: Mapped[str] = mapped_column(String(255), default="")
    lat: Mapped[float | None]
    lng: Mapped[float | None]
    radius_m: Mapped[int] = mapped_column(default=DEFAULT_RADIUS_M)
    weekdays: Mapped[list] = mapped_column(JSON, default=list)  # 0 = Monday … 6 = Sunday
    every_weeks: Mapped[int] = mapped_column(default=1)  # 2: every other week, from starts_on's week
    start_time: Mapped[str] = mapped_column(String(5))  # "09:00", China time
    end_time: Mapped[str] = mapped_column(String(5))
    shift_name: Mapped[str] = mapped_column(String(64), default="")
    capacity: Mapped[int] = mapped_column(default=10)
    min_staff: Mapped[int | None]
    skills: Mapped[list] = mapped_column(JSON, default=list)
    starts_on: Mapped[date] = mapped_column(Date)
    ends_on: Mapped[date | None] = mapped_column(Date)
    weeks_ahead: Mapped[int] = mapped_column(default=4)  # shifts exist this many weeks ahead
    skip_holidays: Mapped[bool] = mapped_column(default=True)  # menus/holidays.yaml
    exceptions: Mapped[list] = mapped_column(JSON, default=list)  # ISO dates skipped as well
    active: Mapped[bool] = mapped_column(default=True)
    # China day its shifts were last made for: the scheduler makes them once a day, not each pass.
    materialised_on: Mapped[date | None] = mapped_column(Date)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("coordinators.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime | None]

    project: Mapped[Project] = relationship()
    team: Mapped[Team | None] = relationship()
    place: Mapped[Place | None] = relationship()


class CalloutOptIn(Base):
    """A volunteer who agreed (in chat) to be asked to fill shifts at short notice."""

    __tablename__ = "callout_optins"

    volunteer_id: Mapped[int] = mapped_column(ForeignKey("volunteers.id"), primary_key=True)
    opted_in_at: Mapped[datetime]


class Callout(Base):
    """One call-out to one volunteer, for a shift or an order; answered by replying 报名."""

    __tablename__ = "callouts"
    __table_args__ = (
        UniqueConstraint("volunteer_id", "day"),  # at most one call-out per volunteer per day
        Index("ix_callouts_volunteer_sent", "volunteer_id", "sent_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    volunteer_id: Mapped[int] = mapped_column(ForeignKey("volunteers.id"))
    shift_id: Mapped[int | None] = mapped_column(ForeignKey("shifts.id"), index=True)
    order_id: Mapped[int | None] = mapped_column(ForeignKey("orders.id"), index=True)
    day: Mapped[date] = mapped_column(Date)  # China date it was sent
    sent_at: Mapped[datetime]
    answered_at: Mapped[datetime | None]
    result: Mapped[str | None] = mapped_column(String(16))  # signed | waitlisted | taken | refused
    created_by: Mapped[int | None] = mapped_column(ForeignKey("coordinators.id"))  # None: the rule

    volunteer: Mapped[Volunteer] = relationship()
    shift: Mapped[Shift | None] = relationship()
    order: Mapped[Order | None] = relationship()
