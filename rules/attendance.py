"""Shifts that fill and people who show up: recurring shifts, how each signed place ended,
marking and desk check-in, sign-ups waiting for approval, shifts at risk and call-outs.

- **Recurring shifts** (`ShiftPattern`): weekdays, times, capacity and minimum every week or
  every n weeks from the week of `starts_on`; `materialise` makes one activity with one shift
  per day for the next `weeks_ahead` weeks, skipping the calendar's days off
  (menus/holidays.yaml) and the pattern's own exceptions. Idempotent: the unique
  (pattern_id, occurs_on) makes a day at most once, whoever runs it. `edit_pattern` changes
  shifts not yet begun only: a day no longer in the pattern is called off (everyone told),
  a moved or resized shift keeps its sign-ups, who are told (`shift_changed` push).
- **Attendance** (`SignUp.attendance`): a signed place ends as present (到岗), absent (缺席),
  excused (请假: cancelled, `late_notice` when after the cut-off) or partial (迟到早退: more
  than the grace late in, or out early). `settle` derives it from check-in/out once the shift
  is over; a coordinator's mark (`mark`) wins and is never overwritten. Marking someone
  present who did not scan, or checking them in at the desk, goes through the same
  attendance and pending hour record as a QR scan (`rules.activities`).
- **Approval**: `rules.activities.sign_up` makes a "pending" sign-up for a volunteer over
  the threshold; `decide_signup` approves (a place or the waitlist, as any sign-up) or refuses.
- **At risk and call-outs**: a shift in the next days with fewer signed than its
  `min_staff` is at risk; `send_callout` asks opted-in volunteers of the right team and
  skills who are free then, at most one call-out per volunteer per China day (a unique
  constraint), through the outbox (push kind `callout`). `answer_callout` ("报名") signs them
  up, or for an order nobody accepted, hands them the order (`rules.dispatch.take`).
- `run_due` (the scheduler's due work): settle ended shifts, keep patterns materialised,
  and call out automatically for shifts `callout_hours` ahead still below their minimum.
  An order escalated with nobody to take it is called out for when it escalates
  (`rules.dispatch`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta

from sqlalchemy import String, cast, exists, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from menus.holidays import Calendar
from menus.holidays import load as load_calendar
from rules import activities as acts
from rules.teams import subtree_ids
from store.dead_letters import drain
from store.models import Follower, Order, Team, Volunteer
from store.models.activities import Activity, Attendance, Project, Shift, SignUp
from store.models.attendance import Callout, CalloutOptIn, ShiftPattern
from store.outbox import notify

CHINA = acts.CHINA
LABELS = {"present": "到岗", "absent": "缺席", "excused": "请假", "partial": "迟到早退"}
CALLOUT_KIND = "callout"  # menus/templates.yaml
CALLOUT_LIMIT = 30  # volunteers asked by one call-out
ANSWER_WINDOW = timedelta(hours=48)  # a "报名" answers a call-out sent this recently
AT_RISK_DAYS = 7
ORDER_SLOT_HOURS = 2  # an order with a time asked for blocks this long when looking for the free
# Places are settled from the scans of shifts that ended at most this long ago: a shift older
# than the feature (or than a scheduler outage this long) keeps no outcome rather than a
# guessed "absent"; its coordinator can still mark it.
SETTLE_WINDOW = timedelta(days=14)


@dataclass(frozen=True)
class Settings:
    """Tunables, configured in bot/config.py (ATTENDANCE_CUTOFF_HOURS,
    ATTENDANCE_APPROVAL_ABOVE, CALLOUT_HOURS_BEFORE); the defaults are the same values."""

    cutoff_hours: int = 24
    approval_above: int = acts.APPROVAL_ABOVE
    callout_hours: int = 48

    @property
    def cutoff(self) -> timedelta:
        return timedelta(hours=self.cutoff_hours)


def phone_last4_matches(digits: str):
    """The SQL condition "the volunteer's phone ends with these 4 digits", in one place:
    when phones are stored encrypted this becomes a comparison on the last-4 column."""
    return Volunteer.phone.like(f"%{digits}")


# ---- recurring shifts -----------------------------------------------------------------

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


# ---- how a place ended ------------------------------------------------------------------

def outcome_of(shift: Shift, attendance: Attendance | None) -> str:
    """present, partial (late in or early out beyond the grace) or absent, from the scans."""
    if attendance is None:
        return "absent"
    late = attendance.checked_in_at > shift.starts_at + acts.GRACE
    out = attendance.checked_out_at
    early = out is not None and "no_checkout" not in (attendance.flags or []) and out < shift.ends_at - acts.GRACE
    return "partial" if late or early else "present"


def _unsettled(now: datetime) -> tuple:
    """Signed places of held (not called-off) shifts over long enough ago, not settled yet."""
    return (SignUp.state == "signed", SignUp.attendance.is_(None), Activity.state == "published",
            Shift.ends_at < now - acts.AUTO_CLOSE_AFTER, Shift.ends_at > now - SETTLE_WINDOW)


def settle(session: Session, now: datetime, ids: list[int] | None = None) -> int:
    """Give every signed place of a shift over (and its forgotten check-outs closed) the
    outcome its scans say; places a coordinator marked keep their mark."""
    query = select(SignUp).join(SignUp.shift).join(Shift.activity).where(*_unsettled(now))
    if ids is not None:
        query = query.where(SignUp.id.in_(ids))
    signups = list(session.scalars(query.limit(500)))
    if not signups:
        return 0
    found = {(a.shift_id, a.volunteer_id): a for a in session.scalars(
        select(Attendance).where(Attendance.shift_id.in_({s.shift_id for s in signups})))}
    for signup in signups:
        signup.attendance = outcome_of(signup.shift, found.get((signup.shift_id, signup.volunteer_id)))
    session.flush()
    return len(signups)


class MarkError(ValueError):
    """A mark refused; the message is fit for the console."""


def mark(session: Session, signup_id: int, state: str, now: datetime, *, coordinator_id: int | None) -> SignUp:
    """A coordinator's mark of how a place ended. Marking present someone who did not scan
    checks them in and out at the desk for the whole shift (a pending hour record, approved
    like any other); a place with a check-in cannot be marked absent or excused (reject its
    hours instead)."""
    if state not in LABELS:
        raise MarkError("未知的出勤状态。")
    signup = session.get(SignUp, signup_id)
    if signup is None or signup.state not in ("signed", "cancelled"):
        raise MarkError("只能标记已报名的志愿者。")
    shift = acts.lock_shift(session, signup.shift_id)
    if shift.starts_at > now:
        raise MarkError("班次开始后才能标记出勤。")
    attendance = session.scalar(select(Attendance).where(Attendance.shift_id == shift.id,
                                                         Attendance.volunteer_id == signup.volunteer_id))
    if attendance is not None and state in ("absent", "excused"):
        raise MarkError("该志愿者已签到，不能标记为缺席或请假；如签到有误，请在时长审核中驳回其时长。")
    if state == "present" and attendance is None:
        if now < shift.ends_at:
            raise MarkError("班次还在进行中：请用“签到台”为其签到，结束后再标记。")
        attendance = Attendance(shift_id=shift.id, volunteer_id=signup.volunteer_id, checked_in_at=shift.starts_at,
                                in_method="desk", flags=["marked"], created_at=now)
        session.add(attendance)
        session.flush()
        acts._close(session, attendance, credited_from=shift.starts_at, credited_to=shift.ends_at,
                    closed_at=shift.ends_at, now=now,
                    method="desk", distance_m=None, flags=["marked"])
    signup.attendance, signup.marked_by, signup.marked_at = state, coordinator_id, now
    session.flush()
    return signup


def desk_matches(session: Session, shift_id: int, text: str) -> list[SignUp]:
    """Signed volunteers of the shift whose name contains `text`, or whose phone ends with
    it when it is 4 digits (for a volunteer without a smartphone, at the desk)."""
    text = (text or "").strip()[:32]
    if not text:
        return []
    cond = phone_last4_matches(text) if text.isdigit() and len(text) == 4 else Volunteer.name.contains(
        text, autoescape=True)
    return list(session.scalars(
        select(SignUp).join(Volunteer, Volunteer.id == SignUp.volunteer_id)
        .where(SignUp.shift_id == shift_id, SignUp.state == "signed", cond).order_by(Volunteer.name).limit(20)))


def desk_check(session: Session, signup_id: int, now: datetime) -> acts.CheckResult:
    """Check a signed volunteer in (or, the next time, out) at the desk: the same rules and
    pending hour record as their own scan."""
    signup = session.get(SignUp, signup_id)
    if signup is None or signup.state != "signed":
        return acts.CheckResult("not_signed")
    return acts.check(session, signup.volunteer, now, activity_id=signup.shift.activity_id, method="desk")


# ---- approval ---------------------------------------------------------------------------

def pending_signups(session: Session, shift_ids) -> list[SignUp]:
    return list(session.scalars(select(SignUp).where(SignUp.shift_id.in_(shift_ids), SignUp.state == "pending")
                                .order_by(SignUp.id)))


def decide_signup(session: Session, signup_id: int, approve: bool, now: datetime) -> acts.SignUpResult | None:
    """Approve a pending sign-up (a place, or the waitlist when full, as any sign-up) or
    refuse it; the volunteer is told either way. None when it is not pending any more."""
    signup = session.get(SignUp, signup_id)
    if signup is None:
        return None
    acts.lock_shift(session, signup.shift_id)
    session.refresh(signup)
    if signup.state != "pending":
        return None
    shift = signup.shift
    if approve:
        result = acts.sign_up(session, signup.volunteer, shift.id, now, waitlist=True, approval_above=None)
        note = {"signed": "已通过审核，报名成功", "waitlisted": f"已通过审核，名额已满，候补第{result.position}位"}.get(
            result.outcome, "未能报名：时段已开始或时间冲突")
        if result.outcome not in ("signed", "waitlisted"):
            signup.state, signup.cancelled_at = "cancelled", now
    else:
        result = acts.SignUpResult("refused", shift, signup)
        signup.state, signup.cancelled_at, note = "cancelled", now, "未通过审核，请联系活动负责人"
    session.flush()
    acts._tell(session, signup.volunteer, kind="signup_decision", title="活动报名审核结果",
               fields={**acts.shift_fields(shift), "说明": note[:20]},
               dedup_key=f"signup:{signup.id}:decided:{int(now.timestamp())}")
    return result


# ---- shifts at risk and call-outs ----------------------------------------------------------

def at_risk(session: Session, now: datetime, *, days: int = AT_RISK_DAYS, activity_ids=None) -> list[acts.ShiftView]:
    """Shifts starting in the next `days` with fewer signed than their minimum, soonest first.
    `activity_ids` (a select) narrows them to a coordinator's scope."""
    signed = (select(func.count()).where(SignUp.shift_id == Shift.id, SignUp.state == "signed")
              .correlate(Shift).scalar_subquery())
    query = (select(Shift).join(Shift.activity)
             .where(Activity.state == "published", Shift.min_staff.is_not(None), Shift.starts_at > now,
                    Shift.starts_at <= now + timedelta(days=days), signed < Shift.min_staff)
             .order_by(Shift.starts_at, Shift.id).limit(200))
    if activity_ids is not None:
        query = query.where(Activity.id.in_(activity_ids))
    views = [acts.ShiftView(s, 0, 0) for s in session.scalars(query)]
    counts = acts._counts(session, [v.shift.id for v in views])
    for v in views:
        v.taken, v.waiting = counts.get((v.shift.id, "signed"), 0), counts.get((v.shift.id, "waitlisted"), 0)
    return views


def opt_in(session: Session, volunteer: Volunteer, now: datetime) -> bool:
    """Agree to call-outs; False when already agreed."""
    if session.get(CalloutOptIn, volunteer.id) is not None:
        return False
    try:
        with session.begin_nested():
            session.add(CalloutOptIn(volunteer_id=volunteer.id, opted_in_at=now))
            session.flush()
    except IntegrityError:
        return False
    return True


def opt_out(session: Session, volunteer: Volunteer) -> bool:
    row = session.get(CalloutOptIn, volunteer.id)
    if row is None:
        return False
    session.delete(row)
    session.flush()
    return True


def opted_in(session: Session, volunteer: Volunteer) -> bool:
    return session.get(CalloutOptIn, volunteer.id) is not None


def slot_code(at: datetime) -> str:
    """The availability code (menus/volunteers.yaml) of a moment: weekday_am … weekend_eve."""
    local = at.astimezone(CHINA)
    part = "am" if local.hour < 12 else "pm" if local.hour < 18 else "eve"
    return f"{'weekday' if local.weekday() < 5 else 'weekend'}_{part}"


def _pool(session: Session, day: date, *, teams: list[Team] | None, skills: list[str]):
    """Active, opted-in, reachable volunteers not called out on `day`, in `teams`' subtrees,
    with one of `skills` (any when empty)."""
    query = (select(Volunteer).join(CalloutOptIn, CalloutOptIn.volunteer_id == Volunteer.id)
             .join(Follower, Follower.id == Volunteer.follower_id)
             .where(Volunteer.state == "active", Follower.subscribed.is_(True),
                    ~exists().where(Callout.volunteer_id == Volunteer.id, Callout.day == day))
             .order_by(Volunteer.id))
    if teams:
        ids = subtree_ids(session, teams[0])
        for team in teams[1:]:
            ids = ids.union(subtree_ids(session, team))
        query = query.where(Volunteer.team_id.in_(ids))
    if skills:
        query = query.where(or_(*[cast(Volunteer.skills, String).like(f'%"{code}"%') for code in skills]))
    return query


def _busy(session: Session, volunteer_id: int, start: datetime, end: datetime) -> bool:
    return session.scalar(select(SignUp.id).join(SignUp.shift).where(
        SignUp.volunteer_id == volunteer_id, SignUp.state == "signed",
        Shift.starts_at < end, Shift.ends_at > start).limit(1)) is not None


def _free(session: Session, v: Volunteer, start: datetime, end: datetime, slots: tuple[str, ...]) -> bool:
    if v.availability and not set(v.availability) & set(slots):
        return False
    return not _busy(session, v.id, start, end)


def callout_candidates(session: Session, shift: Shift, now: datetime, limit: int = CALLOUT_LIMIT) -> list[Volunteer]:
    """Who a call-out for `shift` would ask: the pattern's (else the project's) team and its
    subtree, with a wanted skill, free then, opted in, not called out today, not on it yet."""
    activity = shift.activity
    team = None
    if activity.pattern_id is not None:
        pattern = session.get(ShiftPattern, activity.pattern_id)
        team = pattern.team if pattern is not None else None
    team = team or activity.project.team
    day = now.astimezone(CHINA).date()
    on_it = select(SignUp.volunteer_id).where(SignUp.shift_id == shift.id,
                                              SignUp.state.in_(("signed", "waitlisted", "pending")))
    query = _pool(session, day, teams=[team], skills=list(activity.skills or [])).where(~Volunteer.id.in_(on_it))
    slots = (slot_code(shift.starts_at),)
    out = []
    for v in session.scalars(query.limit(limit * 5)):
        if _free(session, v, shift.starts_at, shift.ends_at, slots):
            out.append(v)
        if len(out) >= limit:
            break
    return out


def _order_window(order: Order) -> tuple[datetime, datetime, tuple[str, ...]]:
    if order.preferred_at is not None:
        start = order.preferred_at
        return start, start + timedelta(hours=ORDER_SLOT_HOURS), (slot_code(start),)
    day = order.preferred_date
    start = datetime.combine(day, time(0), tzinfo=CHINA)
    kind = "weekday" if day.weekday() < 5 else "weekend"
    parts = ("am", "pm", "eve") if order.preferred_slot == "day" else (order.preferred_slot,)
    return start, start + timedelta(days=1), tuple(f"{kind}_{p}" for p in parts)


def order_candidates(session: Session, order: Order, now: datetime, limit: int = CALLOUT_LIMIT) -> list[Volunteer]:
    """Who a call-out for an order nobody accepted would ask: the skill of its category, the
    teams of its community (anywhere when it has none), free then, opted in."""
    teams = list(session.scalars(select(Team).where(Team.community_id == order.community_id))) \
        if order.community_id is not None else []
    day = now.astimezone(CHINA).date()
    query = _pool(session, day, teams=teams, skills=[order.category_code])
    if order.follower_id is not None:
        query = query.where(Volunteer.follower_id != order.follower_id)
    start, end, slots = _order_window(order)
    out = []
    for v in session.scalars(query.limit(limit * 5)):
        # A whole-day window would make anyone with a shift that day busy: only the slot counts.
        busy_check = order.preferred_at is not None
        if (not v.availability or set(v.availability) & set(slots)) and not (busy_check and _busy(session, v.id, start, end)):
            out.append(v)
        if len(out) >= limit:
            break
    return out


def _record_callout(session: Session, volunteer: Volunteer, now: datetime, *, shift: Shift | None = None,
                    order: Order | None = None, coordinator_id: int | None, fields: dict, title: str) -> bool:
    day = now.astimezone(CHINA).date()
    try:
        with session.begin_nested():  # the unique (volunteer, day): a second call-out today loses only itself
            callout = Callout(volunteer_id=volunteer.id, shift_id=shift.id if shift else None,
                              order_id=order.id if order else None, day=day, sent_at=now, created_by=coordinator_id)
            session.add(callout)
            session.flush()
    except IntegrityError:
        return False
    notify(session, openid=volunteer.follower.openid, kind=CALLOUT_KIND, title=title, fields=fields,
           dedup_key=f"callout:{callout.id}")
    return True


def send_callout(session: Session, shift_id: int, now: datetime, *, coordinator_id: int | None = None,
                 limit: int = CALLOUT_LIMIT) -> int:
    """Ask free, opted-in volunteers to fill the shift; returns how many were asked."""
    shift = session.get(Shift, shift_id)
    if shift is None or shift.starts_at <= now or shift.activity.state != "published":
        return 0
    fields = {**acts.shift_fields(shift), "说明": "还缺人手，回复“报名”即可参加"}
    sent = sum(_record_callout(session, v, now, shift=shift, coordinator_id=coordinator_id, fields=fields,
                               title="志愿活动召集")
               for v in callout_candidates(session, shift, now, limit))
    shift.callout_at = shift.callout_at or now
    session.flush()
    return sent


def send_order_callout(session: Session, order_id: int, now: datetime, *, coordinator_id: int | None = None,
                       limit: int = CALLOUT_LIMIT) -> int:
    """Ask free, opted-in volunteers with the skill to take an order nobody accepted."""
    order = session.get(Order, order_id)
    if order is None or order.status not in ("submitted", "offered", "escalated"):
        return 0
    community = order.community.name if order.community is not None else "社区待确认"
    start, _, _ = _order_window(order)
    when = (f"{order.preferred_at.astimezone(CHINA):%m月%d日 %H:%M}" if order.preferred_at is not None
            else f"{order.preferred_date:%m月%d日}")
    fields = {"活动": order.sub_name, "时间": when, "地点": community, "说明": "暂无人接单，回复“报名”接单"}
    return sum(_record_callout(session, v, now, order=order, coordinator_id=coordinator_id, fields=fields,
                               title="服务工单召集")
               for v in order_candidates(session, order, now, limit))


@dataclass
class CalloutAnswer:
    outcome: str  # none | signed | waitlisted | pending | taken | closed | overlap | already | refused
    callout: Callout | None = None
    shift: Shift | None = None
    order: Order | None = None
    position: int | None = None
    message: str = ""  # why an order could not be taken


def answer_callout(session: Session, volunteer: Volunteer, now: datetime,
                   settings: Settings | None = None) -> CalloutAnswer:
    """"报名" after a call-out: sign up for its shift (the waitlist when full meanwhile) or take
    its order. Only the latest call-out of the last ANSWER_WINDOW counts."""
    settings = settings or Settings()
    callout = session.scalar(select(Callout).where(Callout.volunteer_id == volunteer.id,
                                                   Callout.sent_at > now - ANSWER_WINDOW)
                             .order_by(Callout.sent_at.desc(), Callout.id.desc()).limit(1))
    if callout is None:
        return CalloutAnswer("none")
    if callout.order_id is not None:
        from rules import dispatch  # dispatch imports this module (to call out): import it when used

        order = callout.order
        if callout.result == "taken":
            return CalloutAnswer("already", callout, order=order)
        try:
            dispatch.take(session, volunteer, order, now)
        except dispatch.DispatchError as e:
            callout.answered_at, callout.result = now, "refused"
            return CalloutAnswer("refused", callout, order=order, message=str(e))
        callout.answered_at, callout.result = now, "taken"
        return CalloutAnswer("taken", callout, order=order)
    r = acts.sign_up(session, volunteer, callout.shift_id, now, waitlist=True, approval_above=settings.approval_above)
    outcome = {"already_signed": "already", "already_waitlisted": "already", "already_pending": "already"}.get(
        r.outcome, r.outcome)
    if outcome in ("signed", "waitlisted", "pending"):
        callout.answered_at, callout.result = now, outcome
    return CalloutAnswer(outcome, callout, shift=r.shift or callout.shift, position=r.position)


# ---- the scheduler's due work -----------------------------------------------------------------

def _due(services, stmt) -> list[int]:
    with services.db.transaction() as session:
        return list(session.scalars(stmt.limit(200)))


def run_due(services, settings: Settings | None = None) -> int:
    """Each scheduler pass: settle shifts that are over, make the patterns' shifts of the
    coming weeks (once a day per pattern), and call out for shifts `callout_hours` ahead
    still below their minimum. Each step is a conditional change (an unsettled place, a
    shift's `callout_at`, a day's unique call-out), so two schedulers never do one twice;
    an item that fails alone is set aside (store.dead_letters) and the others go on."""
    settings = settings or getattr(services, "attendance_settings", None) or Settings()
    now = services.clock.now()
    done = 0
    ended = select(SignUp.id).join(SignUp.shift).join(Shift.activity).where(*_unsettled(now)).order_by(SignUp.id)
    result = drain(services, "attendance-settle", _due(services, ended), lambda s, sid: settle(s, now, [sid]),
                   apply_all=lambda s, ids: settle(s, now, ids), key=lambda sid: f"id:{sid}", show=str)
    done += result.applied
    errors = [result.error]
    with services.db.transaction() as session:
        done += materialise_all(session, now, due_only=True)
    signed = (select(func.count()).where(SignUp.shift_id == Shift.id, SignUp.state == "signed")
              .correlate(Shift).scalar_subquery())
    risky = (select(Shift.id).join(Shift.activity)
             .where(Activity.state == "published", Shift.min_staff.is_not(None), Shift.callout_at.is_(None),
                    Shift.starts_at > now, Shift.starts_at <= now + timedelta(hours=settings.callout_hours),
                    signed < Shift.min_staff).order_by(Shift.starts_at))
    result = drain(services, "shift-callouts", _due(services, risky),
                   lambda s, sid: _auto_callout(s, sid, now), key=lambda sid: f"id:{sid}", show=str)
    done += result.applied
    errors.append(result.error)
    error = next((e for e in errors if e is not None), None)
    if error is not None:
        raise error
    return done


def _auto_callout(session: Session, shift_id: int, now: datetime) -> int:
    shift = acts.lock_shift(session, shift_id)
    if shift is None or shift.callout_at is not None:
        return 0
    send_callout(session, shift_id, now)
    shift.callout_at = now  # once, even when nobody could be asked
    return 1
