"""Volunteer projects, their activities and shifts, sign-ups and attendance.

A project (志愿项目) belongs to a team; an activity is one occasion of it at a place and time
with one or more shifts (时段) that volunteers sign up for. Attendance is the check-in and
check-out of one volunteer for one shift; closing it produces a pending hour record.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import JSON, Date, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from store.models.base import Base, utcnow
from store.models.district import Team
from store.models.places import DEFAULT_RADIUS_M, Place
from store.models.volunteers import HourRecord, Volunteer

ACTIVITY_STATES = ("published", "cancelled")
# "pending": waiting for a coordinator's approval (a volunteer over the no-show threshold,
# rules.attendance); it holds no place until approved.
SIGNUP_STATES = ("signed", "waitlisted", "cancelled", "pending")
CHECK_METHODS = ("qr", "location", "auto", "desk")
# How a signed place ended (rules.attendance): 到岗 / 缺席 / 请假 / 迟到早退.
ATTENDANCE_STATES = ("present", "absent", "excused", "partial")


class Project(Base):
    __tablename__ = "projects"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(128), index=True)
    team_id: Mapped[int] = mapped_column(ForeignKey("teams.id"), index=True)  # the owner team
    description: Mapped[str] = mapped_column(Text, default="")
    active: Mapped[bool] = mapped_column(default=True)
    is_demo: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    team: Mapped[Team] = relationship()


class Activity(Base):
    __tablename__ = "activities"
    # One activity per day of a recurring pattern: materialising twice makes nothing new.
    __table_args__ = (UniqueConstraint("pattern_id", "occurs_on"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"), index=True)
    title: Mapped[str] = mapped_column(String(128))
    description: Mapped[str] = mapped_column(Text, default="")
    place_id: Mapped[int | None] = mapped_column(ForeignKey("places.id"), index=True)
    # Where it happens; copied from the place when there is one, so check-in by location
    # and "near me" read one row.
    address: Mapped[str] = mapped_column(String(255), default="")
    lat: Mapped[float | None]
    lng: Mapped[float | None]
    radius_m: Mapped[int] = mapped_column(default=DEFAULT_RADIUS_M)
    starts_at: Mapped[datetime] = mapped_column(index=True)
    ends_at: Mapped[datetime]
    capacity: Mapped[int] = mapped_column(default=10)  # default for its shifts
    skills: Mapped[list] = mapped_column(JSON, default=list)  # wanted: same codes as Volunteer.skills
    state: Mapped[str] = mapped_column(String(16), default="published")
    # Made from a recurring pattern (store.models.attendance.ShiftPattern) for this day.
    pattern_id: Mapped[int | None] = mapped_column(ForeignKey("shift_patterns.id"), index=True)
    occurs_on: Mapped[date | None] = mapped_column(Date)
    is_demo: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    project: Mapped[Project] = relationship()
    place: Mapped[Place | None] = relationship()
    shifts: Mapped[list["Shift"]] = relationship(back_populates="activity", order_by="Shift.starts_at")

    @property
    def scene(self) -> str:
        """The QR scene for checking in and out of this activity."""
        return f"act:{self.id}"


class Shift(Base):
    """A time slot of an activity with its own capacity. Sign-ups lock this row."""

    __tablename__ = "shifts"

    id: Mapped[int] = mapped_column(primary_key=True)
    activity_id: Mapped[int] = mapped_column(ForeignKey("activities.id"), index=True)
    name: Mapped[str] = mapped_column(String(64), default="")  # e.g. "上午场", "引导岗"
    starts_at: Mapped[datetime] = mapped_column(index=True)
    ends_at: Mapped[datetime]
    capacity: Mapped[int]
    # Fewer signed than this is a shift at risk (rules.callouts.at_risk); None: no minimum.
    min_staff: Mapped[int | None]
    # When the automatic call-out (48 hours before, still below the minimum) was sent.
    callout_at: Mapped[datetime | None]

    activity: Mapped[Activity] = relationship(back_populates="shifts")


class SignUp(Base):
    """A volunteer's place on a shift: signed, waitlisted (with a position) or cancelled.

    One row per volunteer and shift; signing up again after cancelling reuses it.
    """

    __tablename__ = "signups"
    __table_args__ = (
        UniqueConstraint("shift_id", "volunteer_id"),
        Index("ix_signups_volunteer_state", "volunteer_id", "state"),
        Index("ix_signups_shift_state_position", "shift_id", "state", "position"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    shift_id: Mapped[int] = mapped_column(ForeignKey("shifts.id"))
    volunteer_id: Mapped[int] = mapped_column(ForeignKey("volunteers.id"))
    state: Mapped[str] = mapped_column(String(16))  # one of SIGNUP_STATES
    position: Mapped[int | None]  # waitlist order within the shift (smallest goes first)
    signed_at: Mapped[datetime | None]  # when it last became "signed"
    promoted_at: Mapped[datetime | None]  # moved from the waitlist by a cancellation
    cancelled_at: Mapped[datetime | None]
    # How the place ended (one of ATTENDANCE_STATES; None until settled or marked).
    attendance: Mapped[str | None] = mapped_column(String(16))
    late_notice: Mapped[bool] = mapped_column(default=False)  # cancelled after the cut-off
    marked_by: Mapped[int | None] = mapped_column(ForeignKey("coordinators.id"))  # set by hand
    marked_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    shift: Mapped[Shift] = relationship()
    volunteer: Mapped[Volunteer] = relationship()


class Attendance(Base):
    """Check-in and check-out of one volunteer for one shift (at most one per shift).

    Only the distance to the place is kept, not the volunteer's coordinates: a location
    trace is sensitive personal information.
    """

    __tablename__ = "attendances"
    __table_args__ = (
        UniqueConstraint("shift_id", "volunteer_id"),
        Index("ix_attendances_volunteer_open", "volunteer_id", "checked_out_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    shift_id: Mapped[int] = mapped_column(ForeignKey("shifts.id"))
    volunteer_id: Mapped[int] = mapped_column(ForeignKey("volunteers.id"))
    checked_in_at: Mapped[datetime]
    in_method: Mapped[str] = mapped_column(String(16))  # one of CHECK_METHODS
    in_distance_m: Mapped[int | None]
    checked_out_at: Mapped[datetime | None]
    out_method: Mapped[str | None] = mapped_column(String(16))
    out_distance_m: Mapped[int | None]
    minutes: Mapped[int | None]  # credited, inside the shift window
    flags: Mapped[list] = mapped_column(JSON, default=list)  # e.g. ["no_checkout"], ["overlap"]
    hour_record_id: Mapped[int | None] = mapped_column(ForeignKey("hour_records.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    shift: Mapped[Shift] = relationship()
    volunteer: Mapped[Volunteer] = relationship()
    hour_record: Mapped[HourRecord | None] = relationship()
