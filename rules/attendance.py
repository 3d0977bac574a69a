"""How each signed place ended, marking and desk check-in, sign-ups waiting for approval,
and the attendance domain's due work.

- **Attendance** (`SignUp.attendance`): a signed place ends as present (到岗), absent (缺席),
  excused (请假: cancelled, `late_notice` when after the cut-off) or partial (迟到早退: more
  than the grace late in, or out early). `settle` derives it from check-in/out once the shift
  is over; a coordinator's mark (`mark`) wins and is never overwritten. Marking someone
  present who did not scan, or checking them in at the desk, goes through the same
  attendance and pending hour record as a QR scan (`rules.activities`).
- **Approval**: `rules.activities.sign_up` makes a "pending" sign-up for a volunteer over
  the threshold; `decide_signup` approves (a place or the waitlist, as any sign-up) or refuses.
- `run_due` (the scheduler's due work): settle ended shifts, keep recurring patterns
  materialised (`rules.patterns`), and call out for shifts `callout_hours` ahead still below
  their minimum (`rules.callouts`). An order escalated with nobody to take it is called out
  for when it escalates (`rules.dispatch`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from rules import activities as acts
from rules import callouts, patterns
from store.dead_letters import drain
from store.models import Volunteer
from store.models.activities import Activity, Attendance, Shift, SignUp

CHINA = acts.CHINA
LABELS = {"present": "到岗", "absent": "缺席", "excused": "请假", "partial": "迟到早退"}
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
    """The SQL condition "the volunteer's phone ends with these 4 digits": phones are sealed
    at rest, so it is the clear last-4 column (docs/privacy.md)."""
    return Volunteer.phone_last4 == digits


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
        done += patterns.materialise_all(session, now, due_only=True)
    signed = (select(func.count()).where(SignUp.shift_id == Shift.id, SignUp.state == "signed")
              .correlate(Shift).scalar_subquery())
    risky = (select(Shift.id).join(Shift.activity)
             .where(Activity.state == "published", Shift.min_staff.is_not(None), Shift.callout_at.is_(None),
                    Shift.starts_at > now, Shift.starts_at <= now + timedelta(hours=settings.callout_hours),
                    signed < Shift.min_staff).order_by(Shift.starts_at))
    result = drain(services, "shift-callouts", _due(services, risky),
                   lambda s, sid: callouts.auto_callout(s, sid, now), key=lambda sid: f"id:{sid}", show=str)
    done += result.applied
    errors.append(result.error)
    error = next((e for e in errors if e is not None), None)
    if error is not None:
        raise error
    return done
