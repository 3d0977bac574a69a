"""The district's calendar of days off (public holidays, local closures) and of weekend days
that are working days (调休), loaded from `menus/holidays.yaml`.

Plain data for any rule: recurring shifts skip days off (`rules.attendance`); a rule that
counts working days can ask `is_working_day`. The file is read on each call (it is small and
a district edits it without a restart): no module-level cache of data that may change.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import yaml

HOLIDAYS_FILE = Path(__file__).with_name("holidays.yaml")


class BadHolidays(ValueError):
    """The file cannot be used; the message names the entry."""


@dataclass(frozen=True)
class Calendar:
    off: dict[date, str]  # day -> why (元旦, 春节, a local closure…)
    workdays: dict[date, str]  # weekend days worked instead (调休)

    def is_off(self, day: date) -> bool:
        return day in self.off

    def is_working_day(self, day: date) -> bool:
        """Monday-Friday unless off, and the weekend days listed as working days."""
        if day in self.workdays:
            return True
        return day.weekday() < 5 and day not in self.off


def _day(value, where: str) -> date:
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise BadHolidays(f"{where}: {value!r} is not a date (YYYY-MM-DD)") from None


def parse(raw: dict | None) -> Calendar:
    raw = raw or {}
    off: dict[date, str] = {}
    for i, item in enumerate(list(raw.get("days_off") or []) + list(raw.get("local") or []), 1):
        if not isinstance(item, dict):
            raise BadHolidays(f"entry {i}: expected {{from, to, name}} or {{day, name}}")
        first = _day(item.get("from", item.get("day")), f"entry {i}")
        last = _day(item.get("to", item.get("day", first)), f"entry {i}")
        if last < first:
            raise BadHolidays(f"entry {i}: ends before it starts")
        day = first
        while day <= last:
            off[day] = str(item.get("name") or "休息日")
            day += timedelta(days=1)
    workdays = {}
    for i, item in enumerate(raw.get("workdays") or [], 1):
        if not isinstance(item, dict):
            raise BadHolidays(f"workday {i}: expected {{day, name}}")
        workdays[_day(item.get("day"), f"workday {i}")] = str(item.get("name") or "调休上班")
    return Calendar(off, workdays)


def load(path: Path = HOLIDAYS_FILE) -> Calendar:
    return parse(yaml.safe_load(path.read_text(encoding="utf-8")))
