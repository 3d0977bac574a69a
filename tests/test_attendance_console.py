"""The console's attendance pages over HTTP (console/views/attendance.py): recurring
patterns, the roster (desk check-in by the phone's last 4 digits, marks, approval), shifts
at risk and their call-out, the volunteer's 90-day record, scoped to the coordinator's
subtree (seeds: tests/seeds/console.py)."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import func, select

from rules import activities as acts
from rules import callouts
from store.models import Activity, AuditLog, Callout, HourRecord, Shift, ShiftPattern, SignUp, Volunteer
from tests.console_support import one, signed_in
from tests.seeds import apply


@pytest.fixture
def world(svc):
    apply(svc, ["console_world"])
    return svc



def df_shift(svc) -> int:
    return one(svc, select(Shift.id).join(Shift.activity).where(Activity.title == "DF周末课堂"))


def sign(svc, number: str, shift_id: int) -> int:
    with svc.db.transaction() as s:
        v = s.scalar(select(Volunteer).where(Volunteer.number == number))
        return acts.sign_up(s, v, shift_id, svc.clock.now()).signup.id


def test_a_pattern_made_and_edited_in_the_console(base_url, world):
    b = signed_in(base_url, "df_lead")
    page = b.get("/console/patterns/new").text
    project_id = re.search(r'<option value="(\d+)"[^>]*>DF四点半学校', page).group(1)
    form = {"project_id": project_id, "title": "广场值守", "address": "文化路2号", "weekdays": ["5", "6"],
            "every_weeks": "1", "start_time": "09:00", "end_time": "11:30", "capacity": "6", "min_staff": "3",
            "starts_on": "2026-01-01", "weeks_ahead": "3", "skip_holidays": "1", "exceptions": ""}
    bad = b.post("/console/patterns/new", {**form, "weekdays": []})
    assert bad.status_code == 400 and "星期" in bad.text
    for garbage in ({"start_time": "25:99"}, {"starts_on": "明天"}, {"exceptions": "abc"}, {"weekdays": ["9"]},
                    {"capacity": "x"}, {"min_staff": "7"}, {"every_weeks": "-1"}, {"project_id": "999"}):
        assert b.post("/console/patterns/new", {**form, **garbage}).status_code == 400, garbage
    assert b.post("/console/shifts/1/mark", {"signup_id": "x", "state": "present"}).status_code == 404
    from store.models import Team

    bs_team = one(world, select(Team.id).where(Team.code == "VT-BS"))
    df_team = one(world, select(Team.id).where(Team.code == "VT-DF"))
    assert b.post("/console/patterns/new", {**form, "team_id": str(bs_team)}).status_code == 400
    assert b.post("/console/patterns/new", {**form, "team_id": str(df_team)}).status_code == 302
    pid = one(world, select(ShiftPattern.id))
    assert one(world, select(ShiftPattern.team_id)) == df_team
    made = one(world, select(func.count()).select_from(Activity).where(Activity.pattern_id == pid))
    assert made >= 5  # three weeks of weekends (fewer only over a holiday)
    assert "广场值守" in b.get("/console/patterns").text
    r = b.post(f"/console/patterns/{pid}/edit", {**form, "weekdays": ["5"], "capacity": "8", "active": "1"})
    assert r.status_code == 302
    with world.db.session() as s:
        left = s.scalars(select(Activity).where(Activity.pattern_id == pid, Activity.state == "published")).all()
        assert left and all(a.occurs_on.weekday() == 5 and a.shifts[0].capacity == 8 for a in left)
    assert one(world, select(func.count()).select_from(AuditLog).where(AuditLog.action == "pattern.edit")) == 1
    # Another subtree does not see or edit it.
    other = signed_in(base_url, "bs_lead")
    assert "广场值守" not in other.get("/console/patterns").text
    assert other.get(f"/console/patterns/{pid}/edit").status_code == 404


def test_roster_desk_check_in_marks_and_scope(base_url, world):
    sid = df_shift(world)
    jia = sign(world, "KW2026000100", sid)  # DF甲, phone 13901001334
    yi = sign(world, "KW2026000101", sid)
    b = signed_in(base_url, "df_lead")
    page = b.get(f"/console/shifts/{sid}/roster").text
    assert "DF甲" in page and "班次开始后可以标记出勤" in page
    found = b.get(f"/console/shifts/{sid}/roster", params={"q": "1334"}).text
    assert "DF甲" in found and "13901001334" not in found and "1334" in found
    assert "没有找到" in b.get(f"/console/shifts/{sid}/roster", params={"q": "9999"}).text
    # The shift begins: DF甲 is checked in at the desk, and out at the end.
    with world.db.session() as s:
        start, end = s.get(Shift, sid).starts_at, s.get(Shift, sid).ends_at
    # Hours pass on the test clock: the console's idle timeout signs the coordinator out, so
    # they sign in again, as at the desk.
    world.clock.advance(seconds=(start - world.clock.now()).total_seconds() + 60)
    b = signed_in(base_url, "df_lead")
    b.post(f"/console/shifts/{sid}/desk", {"signup_id": str(jia)})
    world.clock.advance(seconds=(end - start).total_seconds())
    b = signed_in(base_url, "df_lead")
    r = b.post(f"/console/shifts/{sid}/desk", {"signup_id": str(jia)})
    assert r.status_code == 302
    with world.db.session() as s:
        rec = s.scalar(select(HourRecord).where(HourRecord.source_ref == f"shift:{sid}"))
        assert (rec.state, rec.minutes) == ("pending", 120)
    # DF乙 did not come; marked absent. DF甲 scanned, so cannot be.
    b.post(f"/console/shifts/{sid}/mark", {"signup_id": str(yi), "state": "absent"})
    b.post(f"/console/shifts/{sid}/mark", {"signup_id": str(jia), "state": "absent"})
    assert one(world, select(SignUp.attendance).where(SignUp.id == yi)) == "absent"
    assert one(world, select(SignUp.attendance).where(SignUp.id == jia)) is None
    assert "已签到，不能标记为缺席" in b.get(f"/console/shifts/{sid}/roster").text
    yi_id = one(world, select(SignUp.volunteer_id).where(SignUp.id == yi))
    assert "缺席 1 次" in b.get(f"/console/volunteers/{yi_id}").text
    # 北苑's lead cannot see 东风's roster nor act on it.
    other = signed_in(base_url, "bs_lead")
    assert other.get(f"/console/shifts/{sid}/roster").status_code == 404
    assert other.post(f"/console/shifts/{sid}/mark", {"signup_id": str(yi), "state": "present"}).status_code == 404


def test_shifts_at_risk_and_the_call_out_button(base_url, world):
    sid = df_shift(world)
    b = signed_in(base_url, "df_lead")
    assert "没有缺人的班次" in b.get("/console/activities/at-risk").text
    assert b.post(f"/console/shifts/{sid}/minimum", {"min_staff": "99"}).status_code == 302
    assert one(world, select(Shift.min_staff).where(Shift.id == sid)) is None  # refused: above capacity
    b.post(f"/console/shifts/{sid}/minimum", {"min_staff": "2"})
    page = b.get("/console/activities/at-risk").text
    assert "DF周末课堂" in page and "已报 0 / 最少 2" in page
    assert "DF周末课堂" not in signed_in(base_url, "bs_lead").get("/console/activities/at-risk").text
    with world.db.transaction() as s:
        for number in ("KW2026000100", "KW2026000201"):  # 东风's and 北苑's
            callouts.opt_in(s, s.scalar(select(Volunteer).where(Volunteer.number == number)), world.clock.now())
    b.post(f"/console/shifts/{sid}/callout", {"next": "at-risk"})
    called = one(world, select(func.count()).select_from(Callout).where(Callout.shift_id == sid))
    assert called == 1  # only 东风's volunteer: the shift is 东风's
    b.get("/console/activities/at-risk")  # shows (and so clears) the flash
    b.post(f"/console/shifts/{sid}/callout", {"next": "at-risk"})  # the same day: nobody twice
    assert "今天未被召集过" in b.get("/console/activities/at-risk").text
    assert one(world, select(func.count()).select_from(Callout)) == 1


def test_a_call_out_for_an_order_from_its_page(base_url, world):
    from store.models import Order

    with world.db.transaction() as s:
        order = s.scalar(select(Order).where(Order.status == "submitted").join(Order.community)
                         .order_by(Order.id).limit(1))
        oid = order.id
        df = s.scalar(select(Volunteer).where(Volunteer.number == "KW2026000100"))
        assert df.team.community_id == order.community_id  # 东风's order
        for number in ("KW2026000100", "KW2026000101", "KW2026000200"):
            callouts.opt_in(s, s.scalar(select(Volunteer).where(Volunteer.number == number)), world.clock.now())
    b = signed_in(base_url, "df_lead")
    assert "发出召集" in b.get(f"/console/orders/{oid}").text
    assert signed_in(base_url, "bs_lead").post(f"/console/orders/{oid}/callout").status_code == 404
    assert b.post(f"/console/orders/{oid}/callout").status_code == 302
    asked = one(world, select(func.count()).select_from(Callout).where(Callout.order_id == oid))
    assert asked == 2  # 东风's two with the skill; 北苑's is of another community
