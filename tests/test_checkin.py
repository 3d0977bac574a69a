"""Check-in and check-out: minutes inside the shift window with a grace, early and late
scans, forgotten check-outs, overlaps, repeats; station codes, the scan menu button and
location check-in over HTTP."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select

from rules import activities as acts
from store.models import Attendance, HourRecord, Project, Volunteer
from tests import seeds
from tests.seeds.activities import volunteer

T = datetime.now(timezone.utc).replace(second=0, microsecond=0) + timedelta(days=1)  # a shift start


@pytest.fixture
def shift(svc):
    """A 2-hour shift at T (activity at place 1), o_act_a signed up. Returns (activity id, shift id)."""
    seeds.apply(svc, ["act_base"])
    with svc.db.transaction() as s:
        from store.models import Place

        a = acts.add_activity(s, project=s.get(Project, 1), title="清洁家园", capacity=5, place=s.get(Place, 1),
                              now=T - timedelta(days=2), shifts=[(T, T + timedelta(hours=2), "")])
        assert acts.sign_up(s, volunteer(s, "o_act_a"), a.shifts[0].id, T - timedelta(days=2)).outcome == "signed"
        return a.id, a.shifts[0].id


def check(svc, at: datetime, activity_id: int | None = None, place_id: int | None = None, who: str = "o_act_a"):
    with svc.db.transaction() as s:
        r = acts.check(s, volunteer(s, who), at, activity_id=activity_id, place_id=place_id)
        return r.outcome, r.minutes, r.refused


def records(svc) -> list[tuple[int, str | None]]:
    with svc.db.transaction() as s:
        return [(r.minutes, r.flagged) for r in s.scalars(select(HourRecord).order_by(HourRecord.id))]


@pytest.mark.parametrize("check_in, check_out, minutes", [
    (-20, 60, 60),     # early arrival counts from the start
    (4, 60, 60),       # within the grace after the start: from the start
    (20, 90, 70),      # late: from the arrival
    (0, 117, 120),     # within the grace before the end: to the end
    (30, 140, 90),     # after the end (not yet forgotten): to the end
])
def test_minutes_count_only_inside_the_shift_window(svc, shift, check_in, check_out, minutes):
    activity_id, _ = shift
    assert check(svc, T + timedelta(minutes=check_in), activity_id)[0] == "checked_in"
    outcome, got, refused = check(svc, T + timedelta(minutes=check_out), activity_id)
    assert (outcome, got, refused) == ("checked_out", minutes, "")
    assert records(svc) == [(minutes, None)]


def test_scans_too_early_repeated_and_before_the_start(svc, shift):
    activity_id, _ = shift
    assert check(svc, T - timedelta(minutes=45), activity_id)[0] == "too_early"
    assert check(svc, T - timedelta(minutes=25), activity_id)[0] == "checked_in"
    assert check(svc, T - timedelta(minutes=20), activity_id)[0] == "repeat"  # within MIN_STAY
    assert check(svc, T - timedelta(minutes=5), activity_id)[0] == "not_started"
    assert check(svc, T + timedelta(minutes=50), activity_id)[:2] == ("checked_out", 50)
    assert check(svc, T + timedelta(minutes=51), activity_id)[:2] == ("done", 50)  # not counted twice
    assert check(svc, T + timedelta(minutes=80), activity_id)[:2] == ("done", 50)
    assert records(svc) == [(50, None)]


def test_forgotten_check_out_closes_at_the_shift_end_flagged(svc, shift):
    activity_id, shift_id = shift
    check(svc, T + timedelta(minutes=10), activity_id)
    # Not yet overdue 20 minutes after the end; overdue after AUTO_CLOSE_AFTER.
    with svc.db.transaction() as s:
        assert acts.close_overdue(s, T + timedelta(minutes=140)) == []
    with svc.db.transaction() as s:
        closed = acts.close_overdue(s, T + timedelta(hours=3))
        assert len(closed) == 1
        att = s.scalar(select(Attendance))
        assert att.checked_out_at == T + timedelta(hours=2) and att.out_method == "auto"
        assert att.flags == ["no_checkout"] and att.minutes == 110
    assert records(svc) == [(110, acts.NO_CHECKOUT_NOTE)]
    # Scanning later tells them, and counts nothing more.
    assert check(svc, T + timedelta(minutes=150), activity_id)[:2] == ("done", 110)
    assert check(svc, T + timedelta(hours=4), activity_id)[:2] == ("done", 110)


def test_the_scheduler_closes_forgotten_check_outs(svc, shift):
    from pushes.scheduler import run_pass

    activity_id, _ = shift
    check(svc, T + timedelta(minutes=10), activity_id)
    svc.clock.offset = (T + timedelta(hours=3)) - datetime.now(timezone.utc)
    run_pass(svc, recover=False)  # the scheduler's pass runs rules.activities.run_due
    assert records(svc) == [(110, acts.NO_CHECKOUT_NOTE)]


def test_a_scan_long_after_the_end_closes_the_forgotten_attendance_first(svc, shift):
    activity_id, _ = shift
    check(svc, T, activity_id)
    outcome, minutes, _ = check(svc, T + timedelta(hours=2, minutes=45), activity_id)
    assert (outcome, minutes) == ("done", 120)
    assert records(svc) == [(120, acts.NO_CHECKOUT_NOTE)]


def test_overlapping_record_is_refused(svc, shift):
    activity_id, _ = shift
    with svc.db.transaction() as s:
        s.add(HourRecord(volunteer_id=volunteer(s, "o_act_a").id, source="order", source_ref="order:X1",
                         minutes=60, started_at=T + timedelta(minutes=30), ended_at=T + timedelta(minutes=90),
                         state="pending"))
    check(svc, T, activity_id)
    assert check(svc, T + timedelta(hours=2), activity_id) == ("checked_out", 0, "overlap")
    with svc.db.transaction() as s:
        assert s.scalar(select(Attendance.flags)) == ["overlap"]
        assert s.scalar(select(func.count()).select_from(HourRecord)) == 1  # only the order's


def test_an_open_attendance_elsewhere_blocks_a_new_check_in(svc, shift):
    activity_id, _ = shift
    with svc.db.transaction() as s:
        from store.models import Place

        nxt = acts.add_activity(s, project=s.get(Project, 1), title="接力活动", capacity=5, place=s.get(Place, 3),
                                now=T - timedelta(days=1), shifts=[(T + timedelta(hours=2), T + timedelta(hours=3), "")])
        acts.sign_up(s, volunteer(s, "o_act_a"), nxt.shifts[0].id, T - timedelta(days=1))
        next_id = nxt.id
    check(svc, T, activity_id)
    assert check(svc, T + timedelta(minutes=110), next_id)[0] == "open_elsewhere"
    assert check(svc, T + timedelta(minutes=112), activity_id)[:2] == ("checked_out", 112)
    assert check(svc, T + timedelta(minutes=113), next_id)[0] == "checked_in"


def test_station_code_checks_into_a_shift_at_that_place_only_for_the_signed(svc, shift):
    assert check(svc, T, place_id=1)[0] == "checked_in"
    assert check(svc, T, place_id=2)[0] == "open_elsewhere"
    assert check(svc, T, place_id=1, who="o_act_b")[0] == "not_signed"


# ---- over HTTP ---------------------------------------------------------------------------

def test_station_scan_checks_in_a_volunteer_on_shift_there(wechat, svc):
    seeds.apply(svc, ["act_base", "act_on_shift"])  # shift 3 is on now at place 2
    reply = wechat.event("o_act_a", "SCAN", "st:2", Ticket="t")
    assert "签到成功" in reply and "四点半学校" in reply
    # Someone without a shift there sees the station instead.
    reply = wechat.event("o_act_c", "SCAN", "st:2", Ticket="t")
    assert "奎文区志愿服务广场" in reply and "开放时间：每周六 9:00-11:30" in reply and "签到" not in reply
    assert "不存在" in wechat.event("o_act_c", "SCAN", "st:999", Ticket="t")
    assert "不存在" in wechat.event("o_act_c", "SCAN", "act:abc", Ticket="t")


def test_scan_menu_button_with_a_locally_printed_code(wechat_plain, svc):
    seeds.apply(svc, ["act_base", "act_on_shift"])
    sender = wechat_plain.sender
    fields = sender.event("o_act_a", "scancode_waitmsg", "SCAN_CHECKIN",
                          ScanCodeInfo={"ScanType": "qrcode", "ScanResult": "act:2"})
    sent = wechat_plain.send(fields)
    assert "签到成功" in sent.text, sent.text
    fields = sender.event("o_act_a", "scancode_waitmsg", "SCAN_CHECKIN",
                          ScanCodeInfo={"ScanType": "qrcode", "ScanResult": "https://example.org/x"})
    fields["CreateTime"] = int(fields["CreateTime"]) + 1  # another event, not a retry of the first
    assert "请扫描活动现场" in wechat_plain.send(fields).text
    assert "请扫描活动现场" in wechat_plain.say("o_act_a", "签到")


def test_location_check_in_needs_a_place_with_coordinates(wechat_plain, svc):
    seeds.apply(svc, ["act_base"])
    with svc.db.transaction() as s:
        a = acts.add_activity(s, project=s.get(Project, 1), title="无坐标活动", capacity=3, address="某小区",
                              now=datetime.now(timezone.utc),
                              shifts=[(datetime.now(timezone.utc) - timedelta(minutes=1),
                                       datetime.now(timezone.utc) + timedelta(hours=1), "")])
        acts.sign_up(s, volunteer(s, "o_act_c"), a.shifts[0].id, datetime.now(timezone.utc) - timedelta(minutes=5))
    assert "请扫描现场的二维码签到" in wechat_plain.location("o_act_c", 36.70, 119.10)
    # A volunteer with nothing to check into gets "near me" instead.
    assert "离您最近的志愿服务站点" in wechat_plain.location("o_act_d", 36.70, 119.10)
    with svc.db.transaction() as s:
        f = s.scalar(select(Volunteer).where(Volunteer.number == "KW2026900804")).follower
        assert (f.last_lat, f.last_lng) == (36.70, 119.10)
