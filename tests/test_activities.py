"""Sign-ups: capacity under concurrency, waitlist order and promotion, overlaps, reminders,
browsing; creating and importing activities."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select

from rules import activities as acts
from store.models import Activity, Project, Push, Shift, SignUp, Volunteer
from tests import seeds
from tests.seeds.activities import volunteer
from tests.seeds.volunteers import add_volunteer, id_number, team

CHINA = acts.CHINA


def now_utc() -> datetime:
    return datetime.now(timezone.utc)


def vol(s, openid: str) -> Volunteer:
    return volunteer(s, openid)


def make_shift(s, *, capacity: int, starts_in: timedelta = timedelta(days=2), hours: float = 2,
               title: str = "测试活动") -> int:
    project = s.scalar(select(Project).order_by(Project.id).limit(1))
    start = now_utc().replace(microsecond=0) + starts_in
    a = acts.add_activity(s, project=project, title=title, capacity=capacity, address="测试地址", now=now_utc(),
                          shifts=[(start, start + timedelta(hours=hours), "")])
    return a.shifts[0].id


def many_volunteers(s, n: int) -> list[int]:
    ids = []
    for i in range(n):
        v = add_volunteer(s, f"o_race_{i}", f"志愿者{i}", f"KW2026007{i:03d}", "VT-DF", id_number(order=f"{i:03d}"))
        ids.append(v.id)
    return ids


def counts(s, shift_id: int) -> dict[str, int]:
    rows = s.execute(select(SignUp.state, func.count()).where(SignUp.shift_id == shift_id).group_by(SignUp.state))
    return dict(rows.all())


def race(svc, fn, args: list) -> list:
    """Run fn(session, arg) for every arg at the same moment, each in its own transaction."""
    barrier = threading.Barrier(len(args))
    results, errors = [], []

    def worker(arg):
        try:
            barrier.wait(timeout=20)
            with svc.db.transaction() as s:
                results.append(fn(s, arg))
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(repr(e))

    threads = [threading.Thread(target=worker, args=(a,)) for a in args]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    return results


def test_30_volunteers_racing_for_10_places_get_10_signed_and_20_waitlisted(svc):
    seeds.apply(svc, ["act_base"])
    with svc.db.transaction() as s:
        shift_id = make_shift(s, capacity=10)
        ids = many_volunteers(s, 30)
    now = now_utc()

    def sign(s, vid):
        return acts.sign_up(s, s.get(Volunteer, vid), shift_id, now, waitlist=True).outcome

    outcomes = race(svc, sign, ids)
    assert sorted(outcomes).count("signed") == 10 and outcomes.count("waitlisted") == 20
    with svc.db.transaction() as s:
        assert counts(s, shift_id) == {"signed": 10, "waitlisted": 20}
        positions = sorted(s.scalars(select(SignUp.position).where(SignUp.shift_id == shift_id,
                                                                   SignUp.state == "waitlisted")))
        assert positions == list(range(1, 21))  # a strict line, no two in the same place
        reminders = s.scalar(select(func.count()).select_from(Push).where(Push.kind == "shift_reminder"))
        assert reminders == 10

    # Now the 10 signed cancel at once: the first 10 in line move up, in order.
    with svc.db.transaction() as s:
        signed = list(s.scalars(select(SignUp).where(SignUp.shift_id == shift_id, SignUp.state == "signed")))
        cancels = [(sg.volunteer_id, sg.id) for sg in signed]
        first_ten = list(s.scalars(select(SignUp.volunteer_id).where(
            SignUp.shift_id == shift_id, SignUp.state == "waitlisted").order_by(SignUp.position).limit(10)))

    def cancel(s, pair):
        vid, signup_id = pair
        return acts.cancel(s, s.get(Volunteer, vid), signup_id, now_utc()).outcome

    assert race(svc, cancel, cancels) == ["cancelled"] * 10
    with svc.db.transaction() as s:
        assert counts(s, shift_id) == {"signed": 10, "waitlisted": 10, "cancelled": 10}
        promoted = set(s.scalars(select(SignUp.volunteer_id).where(SignUp.shift_id == shift_id,
                                                                   SignUp.state == "signed")))
        assert promoted == set(first_ten)
        assert s.scalar(select(func.count()).select_from(Push).where(Push.kind == "shift_promoted")) == 10
        cancelled_reminders = s.scalar(select(func.count()).select_from(Push).where(
            Push.kind == "shift_reminder", Push.state == "cancelled"))
        assert cancelled_reminders == 10


def test_full_shift_refuses_without_waitlist_and_lines_up_with_it(svc):
    seeds.apply(svc, ["act_base", "act_full"])
    now = now_utc()
    with svc.db.transaction() as s:
        a, d = vol(s, "o_act_a"), vol(s, "o_act_d")
        assert acts.sign_up(s, a, 1, now).outcome == "full"
        assert counts(s, 1) == {"signed": 2}
        r = acts.sign_up(s, a, 1, now, waitlist=True)
        assert (r.outcome, r.position) == ("waitlisted", 1)
        assert acts.sign_up(s, d, 1, now, waitlist=True).position == 2
        again = acts.sign_up(s, a, 1, now, waitlist=True)
        assert (again.outcome, again.position) == ("already_waitlisted", 1)
        # A waitlisted volunteer who cancels leaves the line; nobody is promoted.
        assert acts.cancel(s, a, r.signup.id, now).promoted == []
    with svc.db.transaction() as s:
        d_signup = s.scalar(select(SignUp).where(SignUp.volunteer_id == vol(s, "o_act_d").id))
        assert acts.waitlist_rank(s, d_signup) == 1


def test_promotion_skips_one_who_meanwhile_took_an_overlapping_shift(svc):
    seeds.apply(svc, ["act_base", "act_full"])
    now = now_utc()
    with svc.db.transaction() as s:
        a, d = vol(s, "o_act_a"), vol(s, "o_act_d")
        acts.sign_up(s, a, 1, now, waitlist=True)
        acts.sign_up(s, d, 1, now, waitlist=True)
        # o_act_a takes another shift at the same time as shift 1
        shift1 = s.get(Shift, 1)
        project = s.get(Project, 1)
        other = acts.add_activity(s, project=project, title="同时段活动", capacity=3, address="别处", now=now,
                                  shifts=[(shift1.starts_at, shift1.ends_at, "")])
        assert acts.sign_up(s, a, other.shifts[0].id, now).outcome == "signed"
        b_signup = s.scalar(select(SignUp).where(SignUp.shift_id == 1, SignUp.volunteer_id == vol(s, "o_act_b").id))
        r = acts.cancel(s, vol(s, "o_act_b"), b_signup.id, now)
        assert [p.volunteer_id for p in r.promoted] == [d.id]
        assert s.scalar(select(SignUp.state).where(SignUp.shift_id == 1, SignUp.volunteer_id == a.id)) == "waitlisted"


def test_overlapping_sign_up_is_refused_and_a_started_shift_is_closed(svc):
    seeds.apply(svc, ["act_base"])
    now = now_utc()
    with svc.db.transaction() as s:
        a = vol(s, "o_act_a")
        assert acts.sign_up(s, a, 1, now).outcome == "signed"
        shift1 = s.get(Shift, 1)
        project = s.get(Project, 1)
        other = acts.add_activity(s, project=project, title="重叠活动", capacity=3, address="别处", now=now,
                                  shifts=[(shift1.starts_at + timedelta(hours=1), shift1.ends_at + timedelta(hours=1), "")])
        r = acts.sign_up(s, a, other.shifts[0].id, now)
        assert r.outcome == "overlap" and r.conflict.id == 1
        assert acts.sign_up(s, a, 3, now).outcome == "closed"  # shift 3 began 3 minutes ago
        assert acts.sign_up(s, a, 1, now).outcome == "already_signed"


def test_reminder_is_due_the_day_before_and_follows_cancel_and_sign_up_again(svc):
    seeds.apply(svc, ["act_base"])
    now = now_utc()
    with svc.db.transaction() as s:
        a = vol(s, "o_act_a")
        r = acts.sign_up(s, a, 1, now)
        push = s.scalar(select(Push).where(Push.kind == "shift_reminder"))
        assert push.openid == "o_act_a" and push.state == "pending"
        assert push.due_at == s.get(Shift, 1).starts_at - timedelta(days=1)
        assert push.data["活动"] == "绿植换图书（上午场）" and push.data["地点"] == "东风社区志愿服务站"
        acts.cancel(s, a, r.signup.id, now)
        s.refresh(push)
        assert push.state == "cancelled"
    with svc.db.transaction() as s:
        later = now + timedelta(minutes=1)
        assert acts.sign_up(s, vol(s, "o_act_a"), 1, later).outcome == "signed"
        states = sorted(s.scalars(select(Push.state).where(Push.kind == "shift_reminder")))
        assert states == ["cancelled", "pending"]
        # Less than a day ahead: no reminder (the sign-up reply is enough).
        soon = make_shift(s, capacity=2, starts_in=timedelta(hours=5))
        acts.sign_up(s, vol(s, "o_act_b"), soon, now)
        assert s.scalar(select(func.count()).select_from(Push).where(Push.openid == "o_act_b")) == 0


def test_browse_by_team_chain_distance_and_skill(svc):
    seeds.apply(svc, ["act_base"])
    now = now_utc()
    with svc.db.transaction() as s:
        df = team(s, "VT-DF")
        titles = [v.shift.activity.title for v in acts.upcoming(s, now, team=df)]
        assert titles == ["绿植换图书", "绿植换图书"]  # shift 3 has begun; 义诊 belongs to 北苑
        bs_titles = {v.shift.activity.title for v in acts.upcoming(s, now, team=team(s, "VT-BS"))}
        assert bs_titles == {"义诊进社区"}
        # A brigade-wide project is open to every squad below it.
        s.add(Project(name="全区项目", team_id=team(s, "VT-KW").id))
        s.flush()
        brigade = s.scalar(select(Project).where(Project.name == "全区项目"))
        acts.add_activity(s, project=brigade, title="全区活动", capacity=5, address="区政府", now=now,
                          shifts=[(now + timedelta(days=5), now + timedelta(days=5, hours=2), "")])
        assert "全区活动" in {v.shift.activity.title for v in acts.upcoming(s, now, team=df)}
        near = acts.upcoming(s, now, near=(36.7300, 119.1000))
        assert near[0].shift.activity.title == "义诊进社区" and near[0].distance_m < 50
        assert all(v.distance_m <= acts.NEAR_RADIUS_M for v in near)
        assert acts.upcoming(s, now, near=(30.0, 110.0)) == []
        assert [v.shift.activity.title for v in acts.upcoming(s, now, skills=["04"])] == ["义诊进社区"]
        assert acts.upcoming(s, now, skills=[]) == []


def test_add_activity_checks_and_import_groups_rows_into_activities(svc, tmp_path):
    seeds.apply(svc, ["act_base"])
    now = now_utc()
    with svc.db.transaction() as s:
        project = s.get(Project, 1)
        with pytest.raises(ValueError):
            acts.add_activity(s, project=project, title="x", capacity=3, address="a", now=now, shifts=[])
        with pytest.raises(ValueError):
            acts.add_activity(s, project=project, title="x", capacity=0, address="a", now=now,
                              shifts=[(now, now + timedelta(hours=1), "")])
    assert acts.parse_shift("2026-12-01 22:00-02:00 夜班")[1] == datetime(2026, 12, 2, 2, 0, tzinfo=CHINA)
    with pytest.raises(ValueError):
        acts.parse_shift("明天上午")
    rows = [
        {"project": "东风社区志愿服务", "title": "敬老院探访", "place": "ACT-ST1", "start": "2026-12-05 09:00",
         "end": "10:30", "shift": "上午", "capacity": "4", "skills": "01、06"},
        {"project": "1", "title": "敬老院探访", "place": "ACT-ST1", "start": "2026-12-05 14:00", "end": "16:00",
         "shift": "下午", "capacity": "6"},
        {"project": "北苑健康行", "title": "健康讲座", "address": "北苑社区活动室", "lat": "36.73", "lng": "119.10",
         "start": "2026-12-06 09:00", "end": "2026-12-06 11:00"},
    ]
    with svc.db.transaction() as s:
        created = acts.import_activities(s, rows, now)
        assert [(a.title, len(a.shifts)) for a in created] == [("敬老院探访", 2), ("健康讲座", 1)]
        visit = created[0]
        assert [sh.capacity for sh in visit.shifts] == [4, 6] and visit.skills == ["01", "06"]
        assert visit.lat == 36.7080 and visit.address.startswith("奎文区东风社区志愿服务站")
        assert visit.starts_at == datetime(2026, 12, 5, 9, 0, tzinfo=CHINA)
        assert visit.ends_at == datetime(2026, 12, 5, 16, 0, tzinfo=CHINA)
        assert created[1].shifts[0].capacity == 10 and created[1].lat == 36.73
    bad = [{"project": "没有这个项目", "title": "x", "address": "a", "start": "2026-12-05 09:00", "end": "10:00"},
           {"project": "1", "title": "y", "place": "NOPE", "start": "2026-12-05 09:00", "end": "10:00"},
           {"project": "1", "title": "z", "address": "a", "start": "2026-12-05 09:00", "end": "08:00"},
           {"project": "1", "title": "w", "address": "a", "start": "明天", "end": "10:00"}]
    with pytest.raises(acts.BadActivities) as e:
        with svc.db.transaction() as s:
            acts.import_activities(s, bad, now)
    assert [p.split(":")[0] for p in e.value.problems] == ["row 1", "row 2", "row 3", "row 4"]
    with svc.db.transaction() as s:
        assert s.scalar(select(func.count()).select_from(Activity)) == 5


def test_a_moved_or_enlarged_shift_moves_reminders_and_fills_from_the_waitlist(svc):
    seeds.apply(svc, ["act_base", "act_full"])
    now = now_utc()
    with svc.db.transaction() as s:
        for openid in ("o_act_b", "o_act_c"):  # the seed wrote their places without reminders
            acts._schedule_reminder(s, s.scalar(select(SignUp).where(
                SignUp.volunteer_id == vol(s, openid).id)), s.get(Shift, 1), vol(s, openid), now)
        acts.sign_up(s, vol(s, "o_act_a"), 1, now, waitlist=True)
        acts.sign_up(s, vol(s, "o_act_d"), 1, now, waitlist=True)
    with svc.db.transaction() as s:
        shift = s.get(Shift, 1)
        shift.starts_at += timedelta(days=1)
        shift.ends_at += timedelta(days=1)
        shift.capacity = 3
        promoted = acts.shift_changed(s, 1, now)
        assert [p.volunteer_id for p in promoted] == [vol(s, "o_act_a").id]
    with svc.db.transaction() as s:
        pending = s.scalars(select(Push).where(Push.kind == "shift_reminder", Push.state == "pending")).all()
        assert sorted(p.openid for p in pending) == ["o_act_a", "o_act_b", "o_act_c"]
        assert {p.due_at for p in pending} == {s.get(Shift, 1).starts_at - timedelta(days=1)}
        assert s.scalar(select(func.count()).select_from(Push).where(
            Push.kind == "shift_reminder", Push.state == "cancelled")) == 2
        assert counts(s, 1) == {"signed": 3, "waitlisted": 1}


def test_cancelling_an_activity_tells_everyone_once_and_withdraws_reminders(svc):
    seeds.apply(svc, ["act_base", "act_full"])
    now = now_utc()
    with svc.db.transaction() as s:
        acts.sign_up(s, vol(s, "o_act_a"), 1, now, waitlist=True)
        acts.sign_up(s, vol(s, "o_act_d"), 2, now)
    with svc.db.transaction() as s:
        assert acts.cancel_activity(s, 1, now, reason="天气原因") == 4
        assert acts.cancel_activity(s, 1, now) == 0
    with svc.db.transaction() as s:
        told = s.scalars(select(Push).where(Push.kind == "activity_cancelled")).all()
        assert sorted(p.openid for p in told) == ["o_act_a", "o_act_b", "o_act_c", "o_act_d"]
        assert all(p.data["说明"] == "天气原因" for p in told)
        assert s.scalar(select(func.count()).select_from(Push).where(
            Push.kind == "shift_reminder", Push.state == "pending")) == 0
        assert acts.my_signups(s, vol(s, "o_act_d"), now) == []
        assert acts.sign_up(s, vol(s, "o_act_d"), 1, now).outcome == "closed"
        assert all(v.shift.activity_id != 1 for v in acts.upcoming(s, now))


def test_a_shift_starting_soon_promises_no_reminder_the_day_before():
    """Signed up 3 minutes before a shift, "活动前一天会提醒您" would be a promise never kept."""
    from types import SimpleNamespace

    from rules.activities import reminded

    now = datetime(2026, 12, 4, 2, 0, tzinfo=timezone.utc)
    assert not reminded(SimpleNamespace(starts_at=now + timedelta(minutes=3)), now)
    assert not reminded(SimpleNamespace(starts_at=now + timedelta(hours=23)), now)
    assert reminded(SimpleNamespace(starts_at=now + timedelta(days=2)), now)


def test_hours_under_one_are_said_in_minutes():
    from rules.volunteering import hours_text

    assert [hours_text(m) for m in (0, 10, 59, 60, 90, 1234)] == ["0小时", "10分钟", "59分钟", "1小时", "1.5小时",
                                                                  "20.6小时"]
