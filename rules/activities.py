"""Activities: browsing shifts, signing up (capacity, waitlist), cancelling, reminders, and
attendance (check-in/out) that turns into pending hour records.

Rules kept here, for chat, CLI and the console alike:

- Capacity holds under concurrency: every sign-up and cancellation first locks its shift
  row (SELECT … FOR UPDATE on PostgreSQL; SQLite serialises writers with BEGIN IMMEDIATE).
- A full shift takes a volunteer on its waitlist only when asked to; a cancellation of a
  signed place promotes the first in line and tells them by push.
- A volunteer cannot hold two signed shifts that overlap in time.
- The day before a shift, each signed volunteer is due a reminder push.
- Cancelling a signed place before CANCEL_CUTOFF ahead of the start is leave (请假); later
  it still frees the place but counts as late notice. A volunteer with more than
  APPROVAL_ABOVE no-shows and late notices in RECORD_DAYS signs up "pending" until a
  coordinator approves (rules.attendance). The shell passes the configured values.
- Minutes count only inside the shift window. A check-in at most GRACE after the start
  counts from the start and a check-out at most GRACE before the end counts to the end.
  An attendance still open AUTO_CLOSE_AFTER past the shift end is closed at the shift end
  and flagged. A record overlapping another of the volunteer's records is refused.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session, contains_eager

from rules.places import haversine_m, in_box, split_list
from rules.volunteering import record_hours
from store.dead_letters import drain
from store.models import HourRecord, Push, Team, Volunteer
from store.models.activities import Activity, Attendance, Project, Shift, SignUp
from store.models.places import DEFAULT_RADIUS_M, Place
from store.outbox import notify, withdraw

CHINA = ZoneInfo("Asia/Shanghai")
WEEKDAYS = "一二三四五六日"

GRACE = timedelta(minutes=5)
EARLY_CHECKIN = timedelta(minutes=30)  # how long before the start a check-in is accepted
MIN_STAY = timedelta(minutes=10)  # a second scan sooner than this is a repeat, not a check-out
AUTO_CLOSE_AFTER = timedelta(minutes=30)  # later than this after the end, a check-out was forgotten
REMIND_BEFORE = timedelta(days=1)
NEAR_RADIUS_M = 5_000  # "activities near me"
BROWSE_DAYS = 60
NO_CHECKOUT_NOTE = "未签退：按时段结束时间自动签退"
CANCEL_CUTOFF = timedelta(hours=24)  # ATTENDANCE_CUTOFF_HOURS: later than this is late notice
APPROVAL_ABOVE = 2  # ATTENDANCE_APPROVAL_ABOVE: more no-shows + late notices than this need approval
RECORD_DAYS = 90  # the window those are counted in


# ---- who and when ---------------------------------------------------------------------------

def when_label(start: datetime, end: datetime) -> str:
    """6月1日（周六）09:00-11:30, in China time."""
    s, e = start.astimezone(CHINA), end.astimezone(CHINA)
    day = f"{s.month}月{s.day}日（周{WEEKDAYS[s.weekday()]}）"
    until = f"{e:%H:%M}" if e.date() == s.date() else f"{e.month}月{e.day}日 {e:%H:%M}"
    return f"{day}{s:%H:%M}-{until}"


def place_label(activity: Activity) -> str:
    if activity.place is not None:
        return activity.place.name
    return activity.address or "地点另行通知"


def shift_fields(shift: Shift) -> dict[str, str]:
    """The fields of a push about a shift, in display order (menus/templates.yaml maps them;
    WeChat shows at most 20 characters of each)."""
    activity = shift.activity
    return {"活动": activity.title + (f"（{shift.name}）" if shift.name else ""),
            "时间": when_label(shift.starts_at, shift.ends_at),
            "地点": place_label(activity)}


def team_chain_ids(team: Team) -> list[int]:
    """The team and its ancestors: their activities are open to the team's volunteers."""
    ids = [int(x) for x in re.findall(r"\d+", team.path or "")]
    return sorted(set(ids + [team.id]))


# ---- browsing ---------------------------------------------------------------------------------

@dataclass
class ShiftView:
    shift: Shift
    taken: int
    waiting: int
    distance_m: float | None = None

    @property
    def full(self) -> bool:
        return self.taken >= self.shift.capacity

    @property
    def free(self) -> int:
        return max(0, self.shift.capacity - self.taken)


def _counts(session: Session, shift_ids: list[int]) -> dict[tuple[int, str], int]:
    if not shift_ids:
        return {}
    rows = session.execute(
        select(SignUp.shift_id, SignUp.state, func.count())
        .where(SignUp.shift_id.in_(shift_ids), SignUp.state.in_(("signed", "waitlisted")))
        .group_by(SignUp.shift_id, SignUp.state))
    return {(sid, state): n for sid, state, n in rows}


def upcoming(session: Session, now: datetime, *, team: Team | None = None,
             near: tuple[float, float] | None = None, skills: list[str] | None = None,
             limit: int = 24) -> list[ShiftView]:
    """Shifts open for sign-up (not started, within BROWSE_DAYS), soonest first; filtered by
    the owner team chain, by distance from `near` (within NEAR_RADIUS_M, nearest first) or by
    wanted skills overlapping `skills`."""
    # contains_eager: the loop below reads each shift's activity, which would be one query a shift.
    query = (select(Shift).join(Shift.activity).join(Activity.project)
             .options(contains_eager(Shift.activity).contains_eager(Activity.project))
             .where(Activity.state == "published", Project.active.is_(True),
                    Shift.starts_at > now, Shift.starts_at <= now + timedelta(days=BROWSE_DAYS))
             .order_by(Shift.starts_at, Shift.id))
    if team is not None:
        query = query.where(Project.team_id.in_(team_chain_ids(team)))
    if near is not None:
        query = query.where(in_box(Activity, near[0], near[1], NEAR_RADIUS_M))
    shifts = list(session.scalars(query.limit(500 if (near or skills) else limit)))
    views = []
    for shift in shifts:
        activity = shift.activity
        distance = None
        if near is not None:
            distance = haversine_m(near[0], near[1], activity.lat, activity.lng)
            if distance > NEAR_RADIUS_M:
                continue
        if skills is not None and not set(activity.skills or []) & set(skills):
            continue
        views.append(ShiftView(shift, 0, 0, distance))
    if near is not None:
        views.sort(key=lambda v: (v.distance_m, v.shift.starts_at, v.shift.id))
    views = views[:limit]
    counts = _counts(session, [v.shift.id for v in views])
    for v in views:
        v.taken = counts.get((v.shift.id, "signed"), 0)
        v.waiting = counts.get((v.shift.id, "waitlisted"), 0)
    return views


def shift_view(session: Session, shift_id: int) -> ShiftView | None:
    shift = session.get(Shift, shift_id)
    if shift is None:
        return None
    counts = _counts(session, [shift_id])
    return ShiftView(shift, counts.get((shift_id, "signed"), 0), counts.get((shift_id, "waitlisted"), 0))


def my_signups(session: Session, volunteer: Volunteer, now: datetime) -> list[SignUp]:
    """Signed, waitlisted and pending places on shifts not yet over, soonest first."""
    return list(session.scalars(
        select(SignUp).join(SignUp.shift)
        .join(Shift.activity)
        .where(SignUp.volunteer_id == volunteer.id, SignUp.state.in_(("signed", "waitlisted", "pending")),
               Shift.ends_at > now, Activity.state == "published")
        .order_by(Shift.starts_at, SignUp.id)))


def waitlist_rank(session: Session, signup: SignUp) -> int:
    """1 for the first in line."""
    return session.scalar(select(func.count()).where(
        SignUp.shift_id == signup.shift_id, SignUp.state == "waitlisted",
        SignUp.position <= signup.position)) or 0


# ---- signing up and cancelling -----------------------------------------------------------------

@dataclass
class SignUpResult:
    # signed | waitlisted | pending (waits for a coordinator) | already_signed | already_waitlisted
    # | already_pending | full | overlap | closed
    outcome: str
    shift: Shift | None = None
    signup: SignUp | None = None
    position: int | None = None  # place in the waitlist (1 = next)
    conflict: Shift | None = None


def lock_shift(session: Session, shift_id: int) -> Shift | None:
    """The shift row, locked until the end of the transaction (refreshed from the database)."""
    return session.scalar(select(Shift).where(Shift.id == shift_id).with_for_update()
                          .execution_options(populate_existing=True))


def _signed_count(session: Session, shift_id: int) -> int:
    return session.scalar(select(func.count()).where(
        SignUp.shift_id == shift_id, SignUp.state == "signed")) or 0


def overlapping_shift(session: Session, volunteer_id: int, shift: Shift) -> Shift | None:
    """Another shift the volunteer is signed up for that overlaps `shift` in time."""
    return session.scalar(
        select(Shift).join(SignUp, SignUp.shift_id == Shift.id)
        .where(SignUp.volunteer_id == volunteer_id, SignUp.state == "signed", Shift.id != shift.id,
               Shift.starts_at < shift.ends_at, Shift.ends_at > shift.starts_at)
        .limit(1))


@dataclass
class Record:
    """A volunteer's reliability over the last RECORD_DAYS: shifts missed, late cancellations."""

    no_shows: int
    late_notices: int

    @property
    def total(self) -> int:
        return self.no_shows + self.late_notices


def reliability(session: Session, volunteer_id: int, now: datetime, days: int = RECORD_DAYS) -> Record:
    since = now - timedelta(days=days)
    no_shows = session.scalar(select(func.count()).select_from(SignUp).join(SignUp.shift).where(
        SignUp.volunteer_id == volunteer_id, SignUp.attendance == "absent", Shift.starts_at >= since,
        Shift.starts_at <= now)) or 0
    late = session.scalar(select(func.count()).where(
        SignUp.volunteer_id == volunteer_id, SignUp.late_notice.is_(True), SignUp.cancelled_at >= since)) or 0
    return Record(no_shows, late)


def sign_up(session: Session, volunteer: Volunteer, shift_id: int, now: datetime, *,
            waitlist: bool = False, approval_above: int | None = APPROVAL_ABOVE) -> SignUpResult:
    """Take a place on the shift, or (with `waitlist`) a place in its waitlist when full.

    A volunteer whose no-shows and late notices exceed `approval_above` gets a "pending"
    sign-up that holds no place until a coordinator approves it (None: no such check, as
    when the coordinator's approval itself signs them up)."""
    shift = lock_shift(session, shift_id)
    if shift is None or shift.activity.state != "published" or shift.starts_at <= now:
        return SignUpResult("closed", shift)
    signup = session.scalar(select(SignUp).where(SignUp.shift_id == shift.id,
                                                 SignUp.volunteer_id == volunteer.id)
                            .execution_options(populate_existing=True))
    if signup is not None and signup.state == "signed":
        return SignUpResult("already_signed", shift, signup)
    if signup is not None and signup.state == "waitlisted":
        return SignUpResult("already_waitlisted", shift, signup, waitlist_rank(session, signup))
    if signup is not None and signup.state == "pending" and approval_above is not None:
        return SignUpResult("already_pending", shift, signup)
    conflict = overlapping_shift(session, volunteer.id, shift)
    if conflict is not None:
        return SignUpResult("overlap", shift, conflict=conflict)
    if approval_above is not None and reliability(session, volunteer.id, now).total > approval_above:
        if signup is None:
            signup = SignUp(shift_id=shift.id, volunteer_id=volunteer.id, created_at=now)
            session.add(signup)
        signup.state, signup.position, signup.signed_at = "pending", None, None
        signup.cancelled_at = signup.promoted_at = None
        signup.attendance, signup.late_notice = None, False
        session.flush()
        return SignUpResult("pending", shift, signup)
    full = _signed_count(session, shift.id) >= shift.capacity
    if full and not waitlist:
        return SignUpResult("full", shift)
    position = None
    if full:
        last = session.scalar(select(func.max(SignUp.position)).where(SignUp.shift_id == shift.id))
        position = (last or 0) + 1
    if signup is None:
        signup = SignUp(shift_id=shift.id, volunteer_id=volunteer.id, created_at=now)
        session.add(signup)
    signup.state = "waitlisted" if full else "signed"
    signup.position, signup.signed_at = position, None if full else now
    signup.cancelled_at = signup.promoted_at = None
    signup.attendance, signup.late_notice = None, False
    session.flush()
    if full:
        return SignUpResult("waitlisted", shift, signup, waitlist_rank(session, signup))
    _schedule_reminder(session, signup, shift, volunteer, now)
    return SignUpResult("signed", shift, signup)


@dataclass
class CancelResult:
    outcome: str  # cancelled | already_cancelled | started | not_found
    signup: SignUp | None = None
    promoted: list[SignUp] | None = None
    late: bool = False  # a signed place given up after the cut-off (counts as late notice)


def cancel(session: Session, volunteer: Volunteer, signup_id: int, now: datetime, *,
           cutoff: timedelta = CANCEL_CUTOFF) -> CancelResult:
    """Give up a place (or a waitlist entry); a freed place goes to the first in line.
    A signed place given up at least `cutoff` before the start is leave (请假); later, it
    is leave with late notice."""
    signup = session.get(SignUp, signup_id)
    if signup is None or signup.volunteer_id != volunteer.id:
        return CancelResult("not_found")
    shift = lock_shift(session, signup.shift_id)
    session.refresh(signup)
    if signup.state == "cancelled":
        return CancelResult("already_cancelled", signup)
    if shift.starts_at <= now:
        return CancelResult("started", signup)
    was_signed = signup.state == "signed"
    late = was_signed and shift.starts_at - now < cutoff
    if was_signed:
        _cancel_reminder(session, signup)
        signup.attendance, signup.late_notice = "excused", late
    signup.state, signup.position, signup.cancelled_at = "cancelled", None, now
    session.flush()
    promoted = fill_from_waitlist(session, shift, now) if was_signed else []
    return CancelResult("cancelled", signup, promoted, late)


def fill_from_waitlist(session: Session, shift: Shift, now: datetime) -> list[SignUp]:
    """Promote waitlisted volunteers, first in line first, while the (locked) shift has room.
    One who meanwhile signed up for an overlapping shift keeps their waitlist place."""
    promoted = []
    free = shift.capacity - _signed_count(session, shift.id)
    if free <= 0:
        return promoted
    waiting = session.scalars(select(SignUp).where(SignUp.shift_id == shift.id, SignUp.state == "waitlisted")
                              .order_by(SignUp.position, SignUp.id))
    for signup in list(waiting):
        if free <= 0:
            break
        if overlapping_shift(session, signup.volunteer_id, shift) is not None:
            continue
        signup.state, signup.position = "signed", None
        signup.signed_at = signup.promoted_at = now
        session.flush()
        _tell(session, signup.volunteer, kind="shift_promoted", title="候补成功通知",
              fields={**shift_fields(shift), "说明": "有人取消，您已由候补转为正式报名"},
              dedup_key=f"signup:{signup.id}:promoted:{int(now.timestamp())}")
        _schedule_reminder(session, signup, shift, signup.volunteer, now)
        promoted.append(signup)
        free -= 1
    return promoted


def _tell(session: Session, volunteer: Volunteer, **push) -> None:
    follower = volunteer.follower
    if follower is None or not follower.subscribed:
        return  # unlinked (left the account): nobody to tell
    notify(session, openid=follower.openid, **push)


def _reminder_prefix(signup: SignUp) -> str:
    return f"shift_remind:{signup.id}:"


def _reminder_key(signup: SignUp, shift: Shift) -> str:
    # Per signing and shift time: signing up again, or a shift moved, gets a new reminder.
    return f"{_reminder_prefix(signup)}{int(signup.signed_at.timestamp())}:{int(shift.starts_at.timestamp())}"


def reminded(shift: Shift, now: datetime) -> bool:
    """Whether a sign-up now gets a reminder the day before (not when it starts sooner: the
    sign-up's own reply is the reminder then)."""
    return shift.starts_at - REMIND_BEFORE > now


def _schedule_reminder(session: Session, signup: SignUp, shift: Shift, volunteer: Volunteer,
                       now: datetime) -> None:
    if not reminded(shift, now):
        return  # signed up less than a day ahead: the sign-up reply is reminder enough
    due = shift.starts_at - REMIND_BEFORE
    _tell(session, volunteer, kind="shift_reminder", title="志愿活动提醒",
          fields={**shift_fields(shift), "说明": "明天开始，请准时到场扫码签到"},
          dedup_key=_reminder_key(signup, shift), due_at=due)


def _cancel_reminder(session: Session, signup: SignUp) -> None:
    withdraw(session, Push.dedup_key.startswith(_reminder_prefix(signup)), Push.kind == "shift_reminder",
             reason="sign-up cancelled or shift moved")


def shift_changed(session: Session, shift_id: int, now: datetime) -> list[SignUp]:
    """After a coordinator moved a shift or changed its capacity: reminders follow the new
    time and added places go to the waitlist, first in line first. (Fewer places than
    signed volunteers removes nobody: the coordinator settles that with them.)"""
    shift = lock_shift(session, shift_id)
    for signup in session.scalars(select(SignUp).where(SignUp.shift_id == shift.id, SignUp.state == "signed")):
        _cancel_reminder(session, signup)
        _schedule_reminder(session, signup, shift, signup.volunteer, now)
    return fill_from_waitlist(session, shift, now)


def cancel_activity(session: Session, activity_id: int, now: datetime, reason: str = "") -> int:
    """Call an activity off: reminders are withdrawn and everyone signed or waiting for a
    shift not yet begun is told. Returns how many were told."""
    activity = session.get(Activity, activity_id)
    if activity is None or activity.state == "cancelled":
        return 0
    activity.state = "cancelled"
    told = 0
    for shift in activity.shifts:
        if shift.starts_at <= now:
            continue
        lock_shift(session, shift.id)
        for signup in session.scalars(select(SignUp).where(SignUp.shift_id == shift.id,
                                                           SignUp.state.in_(("signed", "waitlisted")))):
            _cancel_reminder(session, signup)
            _tell(session, signup.volunteer, kind="activity_cancelled", title="志愿活动取消通知",
                  fields={**shift_fields(shift), "说明": (reason or "活动取消，敬请谅解")[:20]},
                  dedup_key=f"shift:{shift.id}:cancelled:{signup.id}")
            told += 1
    return told


# ---- attendance ---------------------------------------------------------------------------------

@dataclass
class CheckResult:
    # checked_in | checked_out | repeat | not_started | done | open_elsewhere | not_signed
    # | too_early
    outcome: str
    attendance: Attendance | None = None
    shift: Shift | None = None
    minutes: int = 0
    refused: str = ""  # checked_out with no record: "overlap" or "outside_window"


def _target(activity_id: int | None, place_id: int | None):
    if activity_id is not None:
        return Activity.id == activity_id
    return Activity.place_id == place_id


def open_attendance(session: Session, volunteer_id: int) -> Attendance | None:
    return session.scalar(select(Attendance).where(Attendance.volunteer_id == volunteer_id,
                                                   Attendance.checked_out_at.is_(None))
                          .order_by(Attendance.id).limit(1))


def current_shift(session: Session, volunteer_id: int, now: datetime, *, activity_id: int | None = None,
                  place_id: int | None = None, any_place: bool = False) -> Shift | None:
    """A signed shift of the volunteer that can be checked into now."""
    query = (select(Shift).join(Shift.activity).join(SignUp, SignUp.shift_id == Shift.id)
             .where(SignUp.volunteer_id == volunteer_id, SignUp.state == "signed", Activity.state == "published",
                    Shift.starts_at <= now + EARLY_CHECKIN, Shift.ends_at > now)
             .order_by(Shift.starts_at).limit(1))
    if not any_place:
        query = query.where(_target(activity_id, place_id))
    return session.scalar(query)


def _overdue(query, now: datetime):
    return (query.join(Attendance.shift)
            .where(Attendance.checked_out_at.is_(None), Shift.ends_at < now - AUTO_CLOSE_AFTER))


def close_overdue(session: Session, now: datetime, volunteer_id: int | None = None,
                  ids: list[int] | None = None) -> list[Attendance]:
    """Close attendances whose check-out was forgotten: at the shift end, flagged."""
    query = _overdue(select(Attendance), now)
    if volunteer_id is not None:
        query = query.where(Attendance.volunteer_id == volunteer_id)
    if ids is not None:
        query = query.where(Attendance.id.in_(ids))
    closed = list(session.scalars(query))
    for attendance in closed:
        shift = attendance.shift
        _close(session, attendance, credited_from=_credited_start(attendance), credited_to=shift.ends_at,
               closed_at=shift.ends_at, now=now, method="auto", distance_m=None, flags=["no_checkout"])
    return closed


def run_due(services) -> int:
    """Called by the scheduler each pass: close check-ins whose check-out was forgotten,
    all in one transaction, or one by one if that fails (one that fails alone is set aside
    by store.dead_letters, so the others are still closed)."""
    now = services.clock.now()
    with services.db.transaction() as session:
        ids = list(session.scalars(_overdue(select(Attendance.id), now).order_by(Attendance.id).limit(500)))
    done = drain(services, "overdue-checkouts", ids,
                 lambda session, aid: len(close_overdue(session, now, ids=[aid])),
                 apply_all=lambda session, all_ids: len(close_overdue(session, now, ids=all_ids)),
                 key=lambda aid: f"id:{aid}", show=str)
    if done.error is not None:
        raise done.error
    return done.applied


def _credited_start(attendance: Attendance) -> datetime:
    start = attendance.shift.starts_at
    return start if attendance.checked_in_at <= start + GRACE else attendance.checked_in_at


def _close(session: Session, attendance: Attendance, *, credited_from: datetime, credited_to: datetime,
           closed_at: datetime, now: datetime, method: str, distance_m: int | None, flags: list[str]) -> str:
    """Check out and create the pending hour record; returns why none was made ("" if made)."""
    shift = attendance.shift
    attendance.checked_out_at = closed_at
    attendance.out_method = method
    attendance.out_distance_m = distance_m
    minutes = max(0, int((credited_to - credited_from).total_seconds() // 60))
    if minutes == 0:
        attendance.minutes, attendance.flags = 0, flags + ["outside_window"]
        return "outside_window"
    source_ref = f"shift:{shift.id}"
    overlap = session.scalar(select(HourRecord.id).where(
        HourRecord.volunteer_id == attendance.volunteer_id, HourRecord.state != "rejected",
        HourRecord.started_at < credited_to, HourRecord.ended_at > credited_from,
        or_(HourRecord.source != "activity", HourRecord.source_ref != source_ref)).limit(1))
    if overlap is not None:
        attendance.minutes, attendance.flags = 0, flags + ["overlap"]
        return "overlap"
    activity = shift.activity
    record = record_hours(
        session, attendance.volunteer, source="activity", source_ref=source_ref, now=now,
        started_at=credited_from, ended_at=credited_to, minutes=minutes,
        description=f"{activity.project.name}·{activity.title}" + (f"·{shift.name}" if shift.name else ""),
        flagged=NO_CHECKOUT_NOTE if "no_checkout" in flags else None)
    attendance.minutes, attendance.flags, attendance.hour_record_id = minutes, flags, record.id
    return ""


def check(session: Session, volunteer: Volunteer, now: datetime, *, activity_id: int | None = None,
          place_id: int | None = None, method: str = "qr", distance_m: int | None = None) -> CheckResult:
    """A scan (or location) at an activity or a place: checks in, or out, or says why not.

    The first scan checks in to the volunteer's current signed shift there; the next one,
    at least MIN_STAY later, checks out. A shift is attended at most once.
    """
    close_overdue(session, now, volunteer.id)
    target = _target(activity_id, place_id)
    attendance = open_attendance(session, volunteer.id)
    if attendance is not None:
        shift = attendance.shift
        here = session.scalar(select(Activity.id).where(Activity.id == shift.activity_id, target))
        if here is None:
            return CheckResult("open_elsewhere", attendance, shift)
        if now - attendance.checked_in_at < MIN_STAY:
            return CheckResult("repeat", attendance, shift)
        if now < shift.starts_at:
            return CheckResult("not_started", attendance, shift)
        credited_to = shift.ends_at if now >= shift.ends_at - GRACE else now
        refused = _close(session, attendance, credited_from=_credited_start(attendance),
                         credited_to=credited_to, closed_at=now, now=now, method=method, distance_m=distance_m,
                         flags=list(attendance.flags or []))
        return CheckResult("checked_out", attendance, shift, attendance.minutes or 0, refused)
    shift = current_shift(session, volunteer.id, now, activity_id=activity_id, place_id=place_id)
    if shift is None:
        return _why_not(session, volunteer, now, target)
    done = session.scalar(select(Attendance).where(Attendance.shift_id == shift.id,
                                                   Attendance.volunteer_id == volunteer.id))
    if done is not None:
        return CheckResult("done", done, shift, done.minutes or 0)
    attendance = Attendance(shift_id=shift.id, volunteer_id=volunteer.id, checked_in_at=now,
                            in_method=method, in_distance_m=distance_m, flags=[], created_at=now)
    session.add(attendance)
    session.flush()
    return CheckResult("checked_in", attendance, shift)


def _why_not(session: Session, volunteer: Volunteer, now: datetime, target) -> CheckResult:
    """No shift to check into here now: already attended today, too early, or not signed up."""
    day_start = now - timedelta(hours=12)
    done = session.scalar(
        select(Attendance).join(Attendance.shift).join(Shift.activity)
        .where(Attendance.volunteer_id == volunteer.id, target, Shift.ends_at > day_start)
        .order_by(Attendance.checked_in_at.desc()).limit(1))
    if done is not None:
        return CheckResult("done", done, done.shift, done.minutes or 0)
    later = session.scalar(
        select(Shift).join(Shift.activity).join(SignUp, SignUp.shift_id == Shift.id)
        .where(SignUp.volunteer_id == volunteer.id, SignUp.state == "signed", target,
               Shift.starts_at > now, Shift.starts_at < now + timedelta(hours=24))
        .order_by(Shift.starts_at).limit(1))
    if later is not None:
        return CheckResult("too_early", shift=later)
    return CheckResult("not_signed")


def location_target(session: Session, volunteer: Volunteer, now: datetime) -> tuple[Activity | None, bool]:
    """Where a location message would check the volunteer in or out: (activity, True) for
    the activity of their open attendance (a check-out), (activity, False) for their shift
    that can be checked into now, (None, False) when neither."""
    close_overdue(session, now, volunteer.id)
    attendance = open_attendance(session, volunteer.id)
    if attendance is not None:
        return attendance.shift.activity, True
    shift = current_shift(session, volunteer.id, now, any_place=True)
    return (shift.activity if shift is not None else None), False


# ---- creating (CLI now, console later) ----------------------------------------------------------

def add_activity(session: Session, *, project: Project, title: str, shifts: list[tuple],
                 capacity: int, place=None, address: str = "", lat: float | None = None,
                 lng: float | None = None, radius_m: int | None = None, skills: list[str] | None = None,
                 description: str = "", now: datetime) -> Activity:
    """An activity with its shifts, each (start, end, name) or (start, end, name, capacity);
    `capacity` is for shifts that give none. The activity's window spans its shifts."""
    if not shifts:
        raise ValueError("an activity needs at least one shift")
    shifts = sorted((s[0], s[1], s[2], s[3] if len(s) > 3 else capacity) for s in shifts)
    for start, end, _, cap in shifts:
        if end <= start:
            raise ValueError(f"shift ends before it starts: {when_label(start, end)}")
        if cap < 1:
            raise ValueError("capacity must be at least 1")
    activity = Activity(
        project_id=project.id, title=title, description=description, capacity=capacity,
        place_id=place.id if place is not None else None,
        address=address or (place.address if place is not None else ""),
        lat=lat if lat is not None else (place.lat if place is not None else None),
        lng=lng if lng is not None else (place.lng if place is not None else None),
        radius_m=radius_m or (place.radius_m if place is not None else DEFAULT_RADIUS_M),
        starts_at=shifts[0][0], ends_at=max(s[1] for s in shifts),
        skills=list(skills or []), state="published", created_at=now)
    session.add(activity)
    session.flush()
    for start, end, name, cap in shifts:
        session.add(Shift(activity_id=activity.id, name=name, starts_at=start, ends_at=end, capacity=cap))
    session.flush()
    return activity


def parse_local(text: str, day: datetime | None = None) -> datetime:
    """'2026-12-01 09:00' (China time), or '11:00' on the date of `day` → aware datetime."""
    text = str(text or "").strip()
    try:
        if day is not None and re.fullmatch(r"\d{1,2}:\d{2}", text):
            hh, mm = (int(x) for x in text.split(":"))
            return day.astimezone(CHINA).replace(hour=hh, minute=mm, second=0, microsecond=0)
        return datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=CHINA)
    except ValueError:
        raise ValueError(f"time {text!r}: use 'YYYY-MM-DD HH:MM' (China time)") from None


def parse_shift(spec: str) -> tuple[datetime, datetime, str]:
    """'2026-12-01 09:00-11:00 上午场' → (start, end, name); the name is optional."""
    m = re.fullmatch(r"\s*(\d{4}-\d{1,2}-\d{1,2} \d{1,2}:\d{2})\s*-\s*(\d{1,2}:\d{2})\s*(.*)", spec or "")
    if not m:
        raise ValueError(f"shift {spec!r}: use 'YYYY-MM-DD HH:MM-HH:MM [name]'")
    start = parse_local(m.group(1))
    end = parse_local(m.group(2), start)
    if end <= start:
        end += timedelta(days=1)  # 22:00-02:00 runs past midnight
    return start, end, m.group(3).strip()[:64]


class BadActivities(ValueError):
    """Rows that cannot be imported; `problems` names each (rows numbered from 1)."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


ACTIVITY_COLUMNS = ("project", "title", "place", "address", "lat", "lng", "start", "end", "shift",
                    "capacity", "skills", "description", "radius_m")


def find_project(session: Session, ref: str) -> Project:
    ref = str(ref or "").strip()
    project = session.get(Project, int(ref)) if ref.isdigit() else session.scalar(
        select(Project).where(Project.name == ref).order_by(Project.id).limit(1))
    if project is None:
        raise ValueError(f"unknown project {ref!r}")
    return project


def _row_shift(session: Session, row: dict) -> dict:
    unknown = set(row) - set(ACTIVITY_COLUMNS)
    if unknown:
        raise ValueError(f"unknown column(s) {sorted(unknown)}")
    title = str(row.get("title") or "").strip()
    if not title:
        raise ValueError("title is required")
    place = None
    if str(row.get("place") or "").strip():
        code = str(row["place"]).strip()
        place = session.scalar(select(Place).where(Place.code == code))
        if place is None:
            raise ValueError(f"unknown place {code!r}")
    lat = float(row["lat"]) if str(row.get("lat") or "").strip() else None
    lng = float(row["lng"]) if str(row.get("lng") or "").strip() else None
    if place is None and not str(row.get("address") or "").strip():
        raise ValueError("a place code or an address is required")
    start = parse_local(row.get("start"))
    end = parse_local(row.get("end"), start)
    if end <= start:
        raise ValueError("end must be after start")
    try:
        capacity = int(str(row.get("capacity") or "10").strip())
    except ValueError:
        raise ValueError(f"capacity is not a whole number: {row.get('capacity')!r}") from None
    radius = str(row.get("radius_m") or "").strip()
    return {"project": find_project(session, row.get("project")), "title": title[:128], "place": place,
            "address": str(row.get("address") or "").strip()[:255], "lat": lat, "lng": lng,
            "shift": (start, end, str(row.get("shift") or "").strip()[:64], capacity), "capacity": capacity,
            "skills": split_list(row.get("skills")), "description": str(row.get("description") or "").strip(),
            "radius_m": int(radius) if radius.isdigit() else None}


def import_activities(session: Session, rows: list[dict], now: datetime) -> list[Activity]:
    """One row per shift; rows with the same project, title, place (or address) and day make
    one activity. All or nothing."""
    problems, groups = [], {}
    for i, raw in enumerate(rows, 1):
        row = {str(k).strip().lower(): v for k, v in raw.items() if k is not None}
        try:
            r = _row_shift(session, row)
        except ValueError as e:
            problems.append(f"row {i}: {e}")
            continue
        day = r["shift"][0].astimezone(CHINA).date()
        key = (r["project"].id, r["title"], r["place"].id if r["place"] else r["address"], day)
        groups.setdefault(key, []).append(r)
    if problems:
        raise BadActivities(problems)
    created = []
    for group in groups.values():
        first = group[0]
        try:
            created.append(add_activity(
                session, project=first["project"], title=first["title"], shifts=[r["shift"] for r in group],
                capacity=first["capacity"], place=first["place"], address=first["address"], lat=first["lat"],
                lng=first["lng"], radius_m=first["radius_m"], skills=first["skills"],
                description=first["description"], now=now))
        except ValueError as e:
            problems.append(f"{first['title']}: {e}")
    if problems:
        raise BadActivities(problems)
    return created
