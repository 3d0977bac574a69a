"""Recurring shifts (固定排班, `ShiftPattern`): weekdays, times, capacity and minimum every
week or every n weeks from the week of `starts_on`.

`materialise` makes one activity with one shift per day for the next `weeks_ahead` weeks,
skipping the calendar's days off (menus/holidays.yaml) and the pattern's own exceptions.
It is idempotent: the unique (pattern_id, occurs_on) makes a day at most once, whoever runs
it (the pattern's save, the scheduler once a day, `volbot pattern materialise`).
`edit_pattern` changes shifts not yet begun only: a day no longer in the pattern is called
off (everyone told), a moved or resized shift keeps its sign-ups, who are told
(`shift_changed` push).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from menus.holidays import Calendar
from menus.holidays import load as load_calendar
from rules import activities as acts
from store.models.activities import Activity, Project, Shift, SignUp
from store.models.attendance import ShiftPattern

CHINA = acts.CHINA


class BadPattern(ValueError):
    """A pattern that cannot be used; the message is fit for the console and the CLI."""


def _hhmm(text: str) -> time:
    try:
        hh, mm = (int(x) for x in str(text).strip().split(":"))
        return time(hh, mm)
    except (ValueError, TypeError):
        raise BadPattern(f"时间 {text!r} 应为 HH:MM") from None


def check_pattern(p: ShiftPattern) -> None:
    if not p.weekdays or any(not isinstance(d, int) or not 0 <= d <= 6 for d in p.weekdays):
        raise BadPattern("请选择至少一个星期几（0=周一 … 6=周日）")
    if not 1 <= (p.every_weeks or 0) <= 8:
        raise BadPattern("间隔周数请填 1–8")
    if not 1 <= (p.weeks_ahead or 0) <= 26:
        raise BadPattern("提前生成的周数请填 1–26")
    if not 1 <= (p.capacity or 0) <= 1000:
        raise BadPattern("人数请填 1–1000")
    if p.min_staff is not None and not 0 <= p.min_staff <= p.capacity:
        raise BadPattern("最少人数不能超过人数")
    start, end = _hhmm(p.start_time), _hhmm(p.end_time)
    if end <= start:
        raise BadPattern("结束时间应晚于开始时间")
    if p.ends_on is not None and p.ends_on < p.starts_on:
        raise BadPattern("结束日期早于开始日期")
    for d in p.exceptions or []:
        try:
            date.fromisoformat(str(d))
        except ValueError:
            raise BadPattern(f"例外日期 {d!r} 应为 YYYY-MM-DD") from None


def occurrences(p: ShiftPattern, first: date, last: date, calendar: Calendar | None) -> list[date]:
    """The days from `first` to `last` (inclusive) the pattern has a shift on."""
    anchor = p.starts_on - timedelta(days=p.starts_on.weekday())  # Monday of its first week
    skip = {date.fromisoformat(str(d)) for d in p.exceptions or []}
    days, day = [], max(first, p.starts_on)
    end = min(last, p.ends_on) if p.ends_on else last
    while day <= end:
        week = (day - anchor).days // 7
        if (day.weekday() in p.weekdays and week % p.every_weeks == 0 and day not in skip
                and not (p.skip_holidays and calendar is not None and calendar.is_off(day))):
            days.append(day)
        day += timedelta(days=1)
    return days


def _times(p: ShiftPattern, day: date) -> tuple[datetime, datetime]:
    start = datetime.combine(day, _hhmm(p.start_time), tzinfo=CHINA)
    return start, datetime.combine(day, _hhmm(p.end_time), tzinfo=CHINA)


def _horizon(p: ShiftPattern, now: datetime) -> tuple[date, date]:
    today = now.astimezone(CHINA).date()
    return today, today + timedelta(days=7 * p.weeks_ahead - 1)


def materialise(session: Session, p: ShiftPattern, now: datetime, calendar: Calendar | None = None) -> list[Activity]:
    """Make the pattern's shifts of the next weeks that do not exist yet; returns those made."""
    if not p.active:
        return []
    calendar = calendar if calendar is not None else load_calendar()
    first, last = _horizon(p, now)
    p.materialised_on = first
    have = set(session.scalars(select(Activity.occurs_on).where(Activity.pattern_id == p.id,
                                                                Activity.occurs_on >= first)))
    made = []
    for day in occurrences(p, first, last, calendar):
        start, end = _times(p, day)
        if day in have or start <= now:
            continue
        try:
            with session.begin_nested():  # another scheduler made the same day: keep theirs
                activity = acts.add_activity(
                    session, project=p.project, title=p.title, description=p.description, capacity=p.capacity,
                    shifts=[(start, end, p.shift_name)], place=p.place, address=p.address, lat=p.lat, lng=p.lng,
                    radius_m=p.radius_m, skills=list(p.skills or []), now=now)
                activity.pattern_id, activity.occurs_on = p.id, day
                activity.shifts[0].min_staff = p.min_staff
                session.flush()
        except IntegrityError:
            continue
        made.append(activity)
    return made


def materialise_all(session: Session, now: datetime, calendar: Calendar | None = None, *,
                    due_only: bool = False) -> int:
    """Make the coming weeks' shifts of every active pattern (`due_only`: of those not
    made yet today, as the scheduler asks each pass). Returns how many were made."""
    query = select(ShiftPattern).where(ShiftPattern.active.is_(True)).order_by(ShiftPattern.id)
    if due_only:
        today = now.astimezone(CHINA).date()
        query = query.where((ShiftPattern.materialised_on.is_(None)) | (ShiftPattern.materialised_on < today))
    patterns = list(session.scalars(query.limit(200)))
    if not patterns:
        return 0
    calendar = calendar if calendar is not None else load_calendar()
    return sum(len(materialise(session, p, now, calendar)) for p in patterns)


PATTERN_FIELDS = ("title", "description", "weekdays", "every_weeks", "start_time", "end_time", "shift_name",
                  "capacity", "min_staff", "skills", "starts_on", "ends_on", "weeks_ahead", "skip_holidays",
                  "exceptions", "active", "team_id")


def add_pattern(session: Session, *, project: Project, now: datetime, place=None, created_by: int | None = None,
                calendar: Calendar | None = None, **values) -> ShiftPattern:
    """A new pattern, its shifts of the next weeks made at once."""
    p = ShiftPattern(project_id=project.id, project=project, created_at=now, created_by=created_by,
                     **{k: v for k, v in values.items() if k in PATTERN_FIELDS + ("address", "lat", "lng", "radius_m")})
    p.weekdays = sorted(set(p.weekdays or []))
    p.every_weeks, p.weeks_ahead = p.every_weeks or 1, p.weeks_ahead or 4
    p.capacity = p.capacity or 10
    p.skip_holidays = True if p.skip_holidays is None else p.skip_holidays
    p.active = True if p.active is None else p.active
    p.exceptions, p.skills = list(p.exceptions or []), list(p.skills or [])
    p.description, p.shift_name = p.description or "", p.shift_name or ""
    _place(p, place)
    check_pattern(p)
    session.add(p)
    session.flush()
    materialise(session, p, now, calendar)
    return p


def _place(p: ShiftPattern, place) -> None:
    p.place_id, p.place = (place.id, place) if place is not None else (None, None)
    if place is not None:
        p.address, p.lat, p.lng, p.radius_m = place.address, place.lat, place.lng, place.radius_m
    elif not p.address:
        raise BadPattern("请选择地点或填写地址")
    p.radius_m = p.radius_m or acts.DEFAULT_RADIUS_M


@dataclass
class PatternEdit:
    changed: int = 0  # future shifts moved or resized (their volunteers told)
    called_off: int = 0  # future days no longer in the pattern
    told: int = 0
    made: list = field(default_factory=list)


def edit_pattern(session: Session, p: ShiftPattern, now: datetime, *, place=..., calendar: Calendar | None = None,
                 **changes) -> PatternEdit:
    """Change a pattern; only shifts not yet begun follow. Those signed or waiting on a
    changed shift are told; a day dropped from the pattern is called off."""
    calendar = calendar if calendar is not None else load_calendar()
    for k, v in changes.items():
        if k not in PATTERN_FIELDS:
            raise BadPattern(f"unknown field {k!r}")
        setattr(p, k, sorted(set(v)) if k == "weekdays" else v)
    if place is not ...:
        _place(p, place)
    check_pattern(p)
    p.updated_at = now
    session.flush()
    result = PatternEdit()
    future = list(session.scalars(select(Activity).where(
        Activity.pattern_id == p.id, Activity.state == "published", Activity.starts_at > now)
        .order_by(Activity.starts_at)))
    first, last = _horizon(p, now)
    last = max([last] + [a.occurs_on for a in future])
    wanted = set(occurrences(p, first, last, calendar)) if p.active else set()
    for activity in future:
        if activity.occurs_on not in wanted:
            result.told += acts.cancel_activity(session, activity.id, now, "排班调整，本次取消")
            result.called_off += 1
            continue
        start, end = _times(p, activity.occurs_on)
        shift = activity.shifts[0]
        before = (shift.starts_at, shift.ends_at, shift.capacity, shift.name, activity.title, activity.place_id)
        activity.title, activity.description, activity.skills = p.title, p.description, list(p.skills or [])
        activity.place_id, activity.address, activity.lat, activity.lng = p.place_id, p.address, p.lat, p.lng
        activity.radius_m, activity.capacity = p.radius_m, p.capacity
        activity.starts_at, activity.ends_at = start, end
        shift.starts_at, shift.ends_at, shift.capacity, shift.name = start, end, p.capacity, p.shift_name
        shift.min_staff = p.min_staff
        session.flush()
        if before != (start, end, p.capacity, p.shift_name, p.title, p.place_id):
            result.changed += 1
            acts.shift_changed(session, shift.id, now)
            result.told += _tell_changed(session, shift, now)
    result.made = materialise(session, p, now, calendar)
    return result


def _tell_changed(session: Session, shift: Shift, now: datetime) -> int:
    told = 0
    for signup in session.scalars(select(SignUp).where(SignUp.shift_id == shift.id,
                                                       SignUp.state.in_(("signed", "waitlisted", "pending")))):
        acts._tell(session, signup.volunteer, kind="shift_changed", title="志愿活动变更通知",
                   fields={**acts.shift_fields(shift), "说明": "排班已调整，如不能参加请回复“我的报名”取消"},
                   dedup_key=f"shift:{shift.id}:changed:{signup.id}:{int(now.timestamp())}")
        told += 1
    return told
