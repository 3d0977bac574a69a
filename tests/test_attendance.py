"""Attendance and shifts that fill (rules/attendance.py, the cut-off and approval in
rules/activities.py): recurring patterns across a year boundary and holidays, editing a
pattern, how a place ends, marking and the desk, the cut-off, sign-ups waiting for
approval, promotion under concurrency, shifts at risk and call-outs (seeds:
tests/seeds/activities.py)."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

from sqlalchemy import func, select

from menus.holidays import Calendar
from menus.holidays import load as load_calendar
from menus.holidays import parse as parse_calendar
from rules import activities as acts
from rules import attendance, callouts, patterns
from store.models import Activity, Attendance, Callout, HourRecord, Project, Push, Shift, ShiftPattern, SignUp
from tests import seeds
from tests.seeds.activities import volunteer
from tests.test_activities import counts, many_volunteers, race

CHINA = acts.CHINA


def now_utc() -> datetime:
    return datetime.now(timezone.utc).replace(microsecond=0)


def pushes(s, kind: str) -> int:
    return s.scalar(select(func.count()).select_from(Push).where(Push.kind == kind)) or 0


def project(s, name: str = "东风社区志愿服务") -> Project:
    return s.scalar(select(Project).where(Project.name == name))


def a_shift(s, *, starts_in: timedelta, hours: float = 2, capacity: int = 5, min_staff: int | None = None,
            skills=None) -> Shift:
    start = now_utc() + starts_in
    activity = acts.add_activity(s, project=project(s), title="测试值守", capacity=capacity, address="东风东街1号",
                                 now=now_utc(), skills=skills, shifts=[(start, start + timedelta(hours=hours), "")])
    activity.shifts[0].min_staff = min_staff
    s.flush()
    return activity.shifts[0]


# ---- recurring shifts ----------------------------------------------------------------------

def test_every_other_friday_across_the_year_boundary_skips_new_year(svc):
    seeds.apply(svc, ["act_base"])
    calendar = parse_calendar({"days_off": [{"from": "2027-01-01", "to": "2027-01-01", "name": "元旦"}]})
    now = datetime(2026, 12, 20, 10, 0, tzinfo=CHINA)  # a Sunday
    with svc.db.transaction() as s:
        p = patterns.add_pattern(s, project=project(s), now=now, calendar=calendar, title="广场值守",
                                   address="文化路2号", weekdays=[4, 5], every_weeks=2, start_time="09:00",
                                   end_time="11:30", capacity=6, min_staff=3, starts_on=date(2026, 12, 14),
                                   weeks_ahead=6)
        days = sorted(s.scalars(select(Activity.occurs_on).where(Activity.pattern_id == p.id)))
        # Weeks of 14 Dec, 28 Dec, 11 Jan, 25 Jan count; 1 Jan 2027 is a holiday.
        # 18-19 Dec (the first week) are before today.
        assert days == [date(2027, 1, 2), date(2027, 1, 15), date(2027, 1, 16), date(2027, 1, 29),
                        date(2027, 1, 30)]
        first = s.scalar(select(Shift).join(Shift.activity).where(Activity.occurs_on == date(2027, 1, 2)))
        assert first.starts_at == datetime(2027, 1, 2, 9, 0, tzinfo=CHINA)
        assert (first.capacity, first.min_staff) == (6, 3)
        # Materialising again (another scheduler, the next pass) makes nothing new.
        assert patterns.materialise(s, p, now, calendar) == []
        assert patterns.materialise_all(s, now + timedelta(days=1), calendar) == 0
        # The scheduler's pass looks at a pattern once a day only.
        assert p.materialised_on == date(2026, 12, 21)
        before = s.scalar(select(func.count()).select_from(Activity))
        p.weeks_ahead = 8  # without a pass due today, nothing is made yet
        assert patterns.materialise_all(s, now + timedelta(days=1), calendar, due_only=True) == 0
        p.weeks_ahead = 6
        assert s.scalar(select(func.count()).select_from(Activity)) == before
        # A week later the horizon moved on by a week: only the days in it that match.
        made = patterns.materialise(s, p, now + timedelta(days=7), calendar)
        assert [a.occurs_on for a in made] == []  # 5-6 Feb fall in an off week
        made = patterns.materialise(s, p, now + timedelta(days=14), calendar)
        assert [a.occurs_on for a in made] == [date(2027, 2, 12), date(2027, 2, 13)]


def test_the_shipped_calendar_knows_the_2026_holidays_and_makeup_days():
    calendar = load_calendar()
    assert calendar.is_off(date(2026, 10, 5)) and calendar.is_off(date(2026, 2, 18))
    assert not calendar.is_off(date(2026, 10, 8))
    assert calendar.is_working_day(date(2026, 10, 10))  # a Saturday worked (调休)
    assert not calendar.is_working_day(date(2026, 10, 1))
    assert calendar.is_off(date(2027, 1, 1))


def test_exceptions_and_end_date_limit_the_days():
    p = ShiftPattern(weekdays=[0], every_weeks=1, starts_on=date(2026, 12, 1), ends_on=date(2026, 12, 28),
                     exceptions=["2026-12-14"], skip_holidays=True, start_time="09:00", end_time="10:00")
    got = patterns.occurrences(p, date(2026, 11, 1), date(2027, 3, 1), Calendar({}, {}))
    assert got == [date(2026, 12, 7), date(2026, 12, 21), date(2026, 12, 28)]


def test_editing_a_pattern_changes_future_shifts_only_and_tells_those_signed(svc):
    seeds.apply(svc, ["act_base"])
    cal = Calendar({}, {})
    today = now_utc().astimezone(CHINA).date()
    with svc.db.transaction() as s:
        p = patterns.add_pattern(s, project=project(s), now=now_utc(), calendar=cal, title="周末值守",
                                   address="文化路2号", weekdays=list(range(7)), start_time="23:50",
                                   end_time="23:59", capacity=3, starts_on=today - timedelta(days=14),
                                   weeks_ahead=1)
        shifts = list(s.scalars(select(Shift).join(Shift.activity).where(Activity.pattern_id == p.id)
                                .order_by(Shift.starts_at)))
        assert len(shifts) in (6, 7)  # today's too unless 23:50 has passed
        a, b = volunteer(s, "o_act_a"), volunteer(s, "o_act_b")
        target = shifts[-1]
        assert acts.sign_up(s, a, target.id, now_utc()).outcome == "signed"
        dropped = shifts[-2]
        assert acts.sign_up(s, b, dropped.id, now_utc()).outcome == "signed"
        # A past occurrence, made by hand before the pattern existed, stays as it was.
        past = acts.add_activity(s, project=project(s), title="周末值守", address="x", capacity=3, now=now_utc(),
                                 shifts=[(now_utc() - timedelta(days=2), now_utc() - timedelta(days=2, hours=-1), "")])
        past.pattern_id, past.occurs_on = p.id, today - timedelta(days=2)
        s.flush()
        keep = {target.activity.occurs_on.weekday()}
        edit = patterns.edit_pattern(s, p, now_utc(), calendar=cal, start_time="23:40", capacity=4,
                                       weekdays=sorted(keep))
        assert edit.called_off == len(shifts) - 1
        assert edit.changed == 1
        s.refresh(target)
        assert target.starts_at.astimezone(CHINA).strftime("%H:%M") == "23:40" and target.capacity == 4
        assert dropped.activity.state == "cancelled"
        assert pushes(s, "shift_changed") == 1 and pushes(s, "activity_cancelled") == 1
        assert past.starts_at < now_utc() and past.state == "published"
        assert s.scalar(select(Push.dedup_key).where(Push.kind == "shift_changed")).startswith(f"shift:{target.id}:")


# ---- how a place ends ------------------------------------------------------------------------

def test_settled_outcomes_from_scans_and_marks_that_win(svc):
    seeds.apply(svc, ["act_base"])
    with svc.db.transaction() as s:
        shift = a_shift(s, starts_in=timedelta(minutes=20))
        vols = [volunteer(s, o) for o in ("o_act_a", "o_act_b", "o_act_c", "o_act_d")]
        for v in vols:
            assert acts.sign_up(s, v, shift.id, now_utc()).outcome == "signed"
        start, end = shift.starts_at, shift.ends_at
        a, b, c, d = vols
        assert acts.check(s, a, start - timedelta(minutes=10), activity_id=shift.activity_id).outcome == "checked_in"
        assert acts.check(s, a, end, activity_id=shift.activity_id).outcome == "checked_out"
        assert acts.check(s, b, start + timedelta(minutes=30), activity_id=shift.activity_id).outcome == "checked_in"
        assert acts.check(s, b, end, activity_id=shift.activity_id).outcome == "checked_out"
        sid = shift.id
    later = end + timedelta(hours=1)
    with svc.db.transaction() as s:
        # c did not come but phoned: the coordinator marks it before the scheduler settles.
        sc = s.scalar(select(SignUp).where(SignUp.shift_id == sid, SignUp.volunteer_id == c.id))
        attendance.mark(s, sc.id, "excused", later, coordinator_id=None)
    svc.clock.advance(hours=4)  # the scheduler's clock: the shift ended over an hour ago
    assert attendance.run_due(svc) >= 3
    with svc.db.transaction() as s:
        got = dict(s.execute(select(SignUp.volunteer_id, SignUp.attendance).where(SignUp.shift_id == sid)).all())
        assert got == {a.id: "present", b.id: "partial", c.id: "excused", d.id: "absent"}
        assert attendance.settle(s, later + timedelta(hours=1)) == 0  # nothing twice
        assert acts.reliability(s, d.id, later).no_shows == 1


def test_called_off_and_long_past_shifts_are_not_settled_as_absent(svc):
    seeds.apply(svc, ["act_base"])
    with svc.db.transaction() as s:
        a = volunteer(s, "o_act_a")
        off = a_shift(s, starts_in=timedelta(days=-2))
        old = a_shift(s, starts_in=timedelta(days=-20))
        held = a_shift(s, starts_in=timedelta(days=-3))
        for shift in (off, old, held):
            s.add(SignUp(shift_id=shift.id, volunteer_id=a.id, state="signed", signed_at=now_utc()))
        off.activity.state = "cancelled"
        s.flush()
        assert attendance.settle(s, now_utc()) == 1
        got = dict(s.execute(select(SignUp.shift_id, SignUp.attendance)).all())
        assert got == {off.id: None, old.id: None, held.id: "absent"}


def test_marking_present_without_a_scan_gives_pending_hours_and_a_scan_cannot_be_marked_absent(svc):
    seeds.apply(svc, ["act_base"])
    with svc.db.transaction() as s:
        shift = a_shift(s, starts_in=timedelta(minutes=20))
        a, b = volunteer(s, "o_act_a"), volunteer(s, "o_act_b")
        sa = acts.sign_up(s, a, shift.id, now_utc()).signup
        sb = acts.sign_up(s, b, shift.id, now_utc()).signup
        during = shift.starts_at + timedelta(minutes=5)
        try:
            attendance.mark(s, sa.id, "present", during, coordinator_id=None)
            raise AssertionError("marked present during the shift")
        except attendance.MarkError as e:
            assert "签到台" in str(e)
        # At the desk: b has no phone; found by the last 4 digits of theirs.
        assert [m.id for m in attendance.desk_matches(s, shift.id, "0000")] == sorted([sa.id, sb.id]) or \
            {m.id for m in attendance.desk_matches(s, shift.id, "0000")} == {sa.id, sb.id}
        assert attendance.desk_matches(s, shift.id, "9999") == []
        assert [m.id for m in attendance.desk_matches(s, shift.id, b.name[:1])] == [sb.id]
        assert attendance.desk_check(s, sb.id, during).outcome == "checked_in"
        after = shift.ends_at + timedelta(minutes=40)
        attendance.mark(s, sa.id, "present", after, coordinator_id=None)
        rec = s.scalar(select(HourRecord).where(HourRecord.volunteer_id == a.id))
        assert (rec.state, rec.minutes, rec.source_ref) == ("pending", 120, f"shift:{shift.id}")
        att = s.scalar(select(Attendance).where(Attendance.volunteer_id == b.id))
        assert att.in_method == "desk"
        try:
            attendance.mark(s, sb.id, "absent", after, coordinator_id=None)
            raise AssertionError("a checked-in volunteer marked absent")
        except attendance.MarkError:
            pass
        assert sa.attendance == "present"


def test_cancelling_before_the_cut_off_is_leave_after_it_late_notice(svc):
    seeds.apply(svc, ["act_base"])
    with svc.db.transaction() as s:
        early = a_shift(s, starts_in=timedelta(hours=30))
        soon = a_shift(s, starts_in=timedelta(hours=5))
        a = volunteer(s, "o_act_a")
        e = acts.sign_up(s, a, early.id, now_utc()).signup
        l = acts.sign_up(s, a, soon.id, now_utc()).signup  # noqa: E741 - l for late
        r1 = acts.cancel(s, a, e.id, now_utc(), cutoff=timedelta(hours=24))
        r2 = acts.cancel(s, a, l.id, now_utc(), cutoff=timedelta(hours=24))
        assert (r1.late, e.attendance, e.late_notice) == (False, "excused", False)
        assert (r2.late, l.attendance, l.late_notice) == (True, "excused", True)
        assert acts.reliability(s, a.id, now_utc()).late_notices == 1
        # A cut-off of 4 hours makes the same cancellation in time.
        again = acts.sign_up(s, a, soon.id, now_utc()).signup
        assert acts.cancel(s, a, again.id, now_utc(), cutoff=timedelta(hours=4)).late is False


def test_over_the_threshold_sign_ups_wait_for_approval(svc):
    seeds.apply(svc, ["act_base"])
    now = now_utc()
    with svc.db.transaction() as s:
        a = volunteer(s, "o_act_a")
        for days in (10, 20, 30):  # three shifts missed in the last 90 days
            missed = a_shift(s, starts_in=timedelta(days=-days))
            s.add(SignUp(shift_id=missed.id, volunteer_id=a.id, state="signed", attendance="absent",
                         signed_at=now - timedelta(days=days + 1)))
        old = a_shift(s, starts_in=timedelta(days=-120))
        s.add(SignUp(shift_id=old.id, volunteer_id=a.id, state="signed", attendance="absent"))
        s.flush()
        assert acts.reliability(s, a.id, now).total == 3
        shift = a_shift(s, starts_in=timedelta(days=3), capacity=1)
        r = acts.sign_up(s, a, shift.id, now, approval_above=2)
        assert r.outcome == "pending" and r.signup.state == "pending"
        assert acts.sign_up(s, a, shift.id, now, approval_above=2).outcome == "already_pending"
        assert counts(s, shift.id) == {"pending": 1}
        # Below a higher threshold the same volunteer signs up at once elsewhere.
        other = a_shift(s, starts_in=timedelta(days=4))
        assert acts.sign_up(s, a, other.id, now, approval_above=3).outcome == "signed"
        decided = attendance.decide_signup(s, r.signup.id, True, now)
        assert decided.outcome == "signed" and r.signup.state == "signed"
        assert attendance.decide_signup(s, r.signup.id, True, now) is None
        assert pushes(s, "signup_decision") == 1


def test_two_cancellations_and_three_waiting_at_once_fill_each_place_once(svc):
    seeds.apply(svc, ["act_base"])
    with svc.db.transaction() as s:
        shift_id = a_shift(s, starts_in=timedelta(days=3), capacity=2).id
        ids = many_volunteers(s, 5)
    now = now_utc()
    with svc.db.transaction() as s:
        from store.models import Volunteer

        signed = [acts.sign_up(s, s.get(Volunteer, v), shift_id, now).signup for v in ids[:2]]
        waiting = [acts.sign_up(s, s.get(Volunteer, v), shift_id, now, waitlist=True).signup for v in ids[2:]]
        assert [w.state for w in waiting] == ["waitlisted"] * 3
        pairs = [(sg.volunteer_id, sg.id) for sg in signed]
        first_two = [w.volunteer_id for w in waiting[:2]]

    def cancel(s, pair):
        from store.models import Volunteer

        vid, sid = pair
        return acts.cancel(s, s.get(Volunteer, vid), sid, now_utc(), cutoff=timedelta(hours=24)).outcome

    assert race(svc, cancel, pairs) == ["cancelled", "cancelled"]
    with svc.db.transaction() as s:
        assert counts(s, shift_id) == {"signed": 2, "waitlisted": 1, "cancelled": 2}
        promoted = sorted(s.scalars(select(SignUp.volunteer_id).where(SignUp.shift_id == shift_id,
                                                                      SignUp.state == "signed")))
        assert promoted == sorted(first_two)
        assert pushes(s, "shift_promoted") == 2
        excused = s.scalars(select(SignUp.attendance).where(SignUp.shift_id == shift_id,
                                                            SignUp.state == "cancelled")).all()
        assert excused == ["excused", "excused"]


# ---- at risk and call-outs -------------------------------------------------------------------

def test_at_risk_call_out_once_a_day_and_reply_signs_up(svc):
    seeds.apply(svc, ["act_base"])
    now = now_utc()
    with svc.db.transaction() as s:
        risky = a_shift(s, starts_in=timedelta(hours=30), min_staff=2)
        fine = a_shift(s, starts_in=timedelta(hours=40), min_staff=0)
        a, b, c, d = (volunteer(s, o) for o in ("o_act_a", "o_act_b", "o_act_c", "o_act_d"))
        assert [v.shift.id for v in callouts.at_risk(s, now)] == [risky.id]
        assert fine.id not in [v.shift.id for v in callouts.at_risk(s, now)]
        for v in (a, b, d):
            callouts.opt_in(s, v, now)
        assert callouts.opt_in(s, a, now) is False
        # c did not opt in; d is of another team (北苑); b is busy then.
        busy = a_shift(s, starts_in=timedelta(hours=29))
        acts.sign_up(s, b, busy.id, now)
        assert [v.id for v in callouts.callout_candidates(s, risky, now)] == [a.id]
        risky_id, second_id = risky.id, a_shift(s, starts_in=timedelta(hours=50), min_staff=3).id
    # The rule: 48 hours before, still below the minimum, the scheduler calls out once.
    assert attendance.run_due(svc) >= 1
    with svc.db.transaction() as s:
        assert s.scalar(select(func.count()).select_from(Callout)) == 1
        assert pushes(s, "callout") == 1
        assert s.get(Shift, risky_id).callout_at is not None
        # The same day, a coordinator's call-out for another shift (b is free then) asks
        # only b: a was called out today already.
        assert callouts.send_callout(s, second_id, now, coordinator_id=None) == 1
        assert s.scalars(select(Callout.volunteer_id).where(Callout.shift_id == second_id)).all() == [b.id]
    attendance.run_due(svc)  # the risky shift's call-out is not sent again
    with svc.db.transaction() as s:
        assert pushes(s, "callout") == 2
        answer = callouts.answer_callout(s, volunteer(s, "o_act_a"), now + timedelta(minutes=5))
        assert (answer.outcome, answer.shift.id) == ("signed", risky_id)
        assert answer.callout.result == "signed"
        assert callouts.answer_callout(s, volunteer(s, "o_act_c"), now).outcome == "none"
        # The next day both may be asked again.
        assert callouts.send_callout(s, second_id, now + timedelta(days=1)) == 2


def test_the_same_call_out_serves_an_order_nobody_took(svc):
    """An order offered to each candidate in turn, unanswered, escalates: the volunteers of
    its community who opted in get the call-out, and the first to reply 报名 takes it."""
    from rules import dispatch
    from store.models import Follower, Order, Volunteer
    from tests.test_dispatch import SETTINGS, new_order

    seeds.apply(svc, ["dispatch_world"])
    now = svc.clock.now()

    def by(s, openid):
        return s.scalar(select(Volunteer).join(Follower, Follower.id == Volunteer.follower_id)
                        .where(Follower.openid == openid))

    with svc.db.transaction() as s:
        li, wang = by(s, "o_dv_li"), by(s, "o_dv_wang")
        callouts.opt_in(s, li, now)
        callouts.opt_in(s, wang, now)  # of 金都, not the order's community: not called
        order = new_order(s, now)
        dispatch.offer_next(s, order, now, SETTINGS)
        while (offer := dispatch.live_offer(s, order)) is not None:
            dispatch.expire(s, offer.id, offer.due_at, SETTINGS)
        assert order.status == "escalated"
        called = s.scalars(select(Callout.volunteer_id).where(Callout.order_id == order.id)).all()
        assert called == [li.id]
        assert s.scalar(select(Push.data).where(Push.kind == "callout"))["说明"].endswith("回复“报名”接单")
        answer = callouts.answer_callout(s, li, order.created_at + timedelta(hours=2))
        assert answer.outcome == "taken", answer.message
        assert s.get(Order, order.id).status == "accepted"
        assert dispatch.accepted_offer(s, order).volunteer_id == li.id
        # Too late for anyone else: the order is taken.
        late = callouts.answer_callout(s, wang, now)
        assert late.outcome == "none"


# ---- reports -----------------------------------------------------------------------------------

def test_attendance_reports_by_team_activity_month_and_the_no_show_list(svc):
    from rules import access, reports
    from store.models import Coordinator
    from tests.seeds.volunteers import team

    seeds.apply(svc, ["act_base"])
    now = now_utc()
    with svc.db.transaction() as s:
        shift = a_shift(s, starts_in=timedelta(days=-1))
        outcomes = {"o_act_a": ("present", False), "o_act_b": ("partial", False), "o_act_c": ("absent", False),
                    "o_act_d": ("excused", True)}
        for openid, (state, late) in outcomes.items():
            s.add(SignUp(shift_id=shift.id, volunteer_id=volunteer(s, openid).id, state="signed",
                         attendance=state, late_notice=late, signed_at=now - timedelta(days=3)))
        coord = Coordinator(team_id=team(s, "VT-KW").id, name="区管理员", role="brigade", active=True)
        s.add(coord)
        s.flush()
        scope = access.scope_for(s, coord)
        year = shift.starts_at.astimezone(CHINA).year
        by_activity = reports.REPORTS["attendance_activity"](s, scope, year)
        assert by_activity.rows == [["东风社区志愿服务·测试值守", 3, 1, 1, 1, 1, 1, "67%"]]
        by_month = reports.attendance_by_month(s, scope, year)
        assert [r[0] for r in by_month.rows] == [f"{shift.starts_at.astimezone(CHINA).month}月"]
        by_team = reports.attendance_by_team(s, scope, year)
        assert sum(r[1] for r in by_team.rows) == 3 and sum(r[5] for r in by_team.rows) == 1
        listed = reports.no_shows(s, scope, year)
        assert [(r[1], r[3], r[4]) for r in listed.rows] == [("郑志愿", 1, 0), ("冯志愿", 0, 1)]
        from console import exports

        csv = exports.to_csv(listed).decode("utf-8-sig")
        assert csv.splitlines()[0] == "编号,姓名,队伍,缺席次数,临时请假次数"
