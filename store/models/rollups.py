"""Running totals of approved service hours, so reports never scan the hour records.

A district has a million hour records; summing a year of them takes seconds. These two
small tables hold the same sums, kept up to date in the transaction that approves a record
(`rules.reports.count_approved`, called by `rules.volunteering.decide_hours`, the one place
that approves hours). Months and years are local (Asia/Shanghai), of the service's start.

- `HourMonthTotal`: per team (the volunteer's team) and local month — a few thousand rows,
  read by "hours by team and month".
- `HourYearTotal`: per volunteer and local year — read by the annual volunteer ranking.

They are derived data: `volbot reports rebuild` recomputes both from `hour_records` and
`volbot reports audit` proves they equal that recomputation.
"""

from __future__ import annotations

from sqlalchemy import ForeignKey, Index
from sqlalchemy.orm import Mapped, mapped_column

from store.models.base import Base


class HourMonthTotal(Base):
    __tablename__ = "hour_month_totals"

    team_id: Mapped[int] = mapped_column(ForeignKey("teams.id"), primary_key=True)
    year: Mapped[int] = mapped_column(primary_key=True)
    month: Mapped[int] = mapped_column(primary_key=True)  # 1..12, local
    minutes: Mapped[int] = mapped_column(default=0)
    records: Mapped[int] = mapped_column(default=0)


class HourYearTotal(Base):
    __tablename__ = "hour_year_totals"
    __table_args__ = (
        # The district ranking: the year's largest totals first, read straight off the index.
        Index("ix_hour_year_totals_year_minutes", "year", "minutes"),
    )

    volunteer_id: Mapped[int] = mapped_column(ForeignKey("volunteers.id"), primary_key=True)
    year: Mapped[int] = mapped_column(primary_key=True)  # local
    minutes: Mapped[int] = mapped_column(default=0)
    records: Mapped[int] = mapped_column(default=0)
