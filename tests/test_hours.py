"""Service hours: recording rules, approval once, stars at exact thresholds, summaries."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, timezone

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from bot.cli import main as volbot
from rules import timebank, volunteering
from rules.volunteering import Rules, VolunteerError
from store.models import Coordinator, HourRecord, Push, TimeTransaction, Volunteer, VolunteerStar
from tests import seeds
from tests.seeds.volunteers import add_volunteer, id_number
from tests.test_teams import cli_env

NOW = datetime(2026, 11, 28, 8, 0, tzinfo=timezone.utc)


def vol(s, number="KW2026000901") -> Volunteer:
    return s.scalar(select(Volunteer).where(Volunteer.number == number))


def coord(s, openid="o_coord") -> Coordinator:
    return s.scalar(select(Coordinator).join(Coordinator.follower).where(Coordinator.follower.has(openid=openid)))


@pytest.fixture
def seeded(svc):
    seeds.apply(svc, ["vol_coordinators", "vol_volunteers"])
    return svc


def test_manual_entry_rules(seeded):
    with seeded.db.transaction() as s:
        v, c, other = vol(s, "KW2026000902"), coord(s), coord(s, "o_coord_by")
        start = NOW - timedelta(hours=3)
        r = volunteering.record_hours(s, v, source="manual", started_at=start, ended_at=start + timedelta(hours=2),
                                      travel_minutes=30, recorded_by=c, now=NOW)
        assert (r.minutes, r.travel_minutes, r.state) == (90, 30, "pending")  # travel not counted
        with pytest.raises(VolunteerError, match="重叠"):
            volunteering.record_hours(s, v, source="manual", started_at=start + timedelta(minutes=119),
                                      ended_at=start + timedelta(hours=3), recorded_by=c, now=NOW)
        # Touching end to start is not an overlap.
        volunteering.record_hours(s, v, source="manual", started_at=start + timedelta(hours=2),
                                  ended_at=start + timedelta(hours=3), recorded_by=c, now=NOW)
        with pytest.raises(VolunteerError, match="协调员"):
            volunteering.record_hours(s, v, source="manual", started_at=NOW - timedelta(days=2),
                                      ended_at=NOW - timedelta(days=2, hours=-1), recorded_by=other, now=NOW)
        with pytest.raises(VolunteerError, match="协调员"):
            volunteering.record_hours(s, v, source="manual", started_at=NOW - timedelta(days=2),
                                      ended_at=NOW - timedelta(days=2, hours=-1), recorded_by=None, now=NOW)
        with pytest.raises(VolunteerError, match="未来"):
            volunteering.record_hours(s, v, source="manual", started_at=NOW, ended_at=NOW + timedelta(hours=1),
                                      recorded_by=c, now=NOW)
        with pytest.raises(VolunteerError, match="路途"):
            volunteering.record_hours(s, v, source="manual", started_at=NOW - timedelta(days=3),
                                      ended_at=NOW - timedelta(days=3, minutes=-60), travel_minutes=60,
                                      recorded_by=c, now=NOW)
        with pytest.raises(VolunteerError, match="晚于"):
            volunteering.record_hours(s, v, source="manual", started_at=NOW, ended_at=NOW, recorded_by=c, now=NOW)
        # A rejected record no longer blocks the slot.
        volunteering.decide_hours(s, [r.id], approve=False, reason="重复", now=NOW, coordinator=c)
        volunteering.record_hours(s, v, source="manual", started_at=start, ended_at=start + timedelta(hours=1),
                                  recorded_by=c, now=NOW)


def test_a_manual_entry_is_approved_by_a_second_coordinator(seeded):
    with seeded.db.transaction() as s:
        v, author = vol(s, "KW2026000902"), coord(s)
        second = Coordinator(team_id=author.team_id, name="第二审核人", role="detachment")
        s.add(second)
        s.flush()
        start = NOW - timedelta(hours=5)
        r = volunteering.record_hours(s, v, source="manual", started_at=start, ended_at=start + timedelta(hours=1),
                                      recorded_by=author, now=NOW)
        own = volunteering.decide_hours(s, [r.id], approve=True, now=NOW, coordinator=author)
        assert [d.outcome for d in own] == ["own_entry"] and r.state == "pending"
        # The author may still reject their own mistake; approval needs the second person.
        ok = volunteering.decide_hours(s, [r.id], approve=True, now=NOW, coordinator=second)
        assert [d.outcome for d in ok] == ["approved"]


def test_only_approved_hours_count_and_reasons_are_kept(seeded):
    with seeded.db.transaction() as s:
        v, c = vol(s), coord(s)
        before = volunteering.summary(s, v, NOW)
        assert (before.approved, before.pending) == (99 * 60, 60)
        pending = s.scalar(select(HourRecord.id).where(HourRecord.state == "pending"))
        with pytest.raises(VolunteerError, match="原因"):
            volunteering.decide_hours(s, [pending], approve=False, now=NOW, coordinator=c)
        [d] = volunteering.decide_hours(s, [pending], approve=False, reason="没有签到", now=NOW, coordinator=c)
        assert d.outcome == "rejected"
        rec = s.get(HourRecord, pending)
        assert (rec.decided_by, rec.reason, rec.decided_at) == (c.id, "没有签到", NOW)
        after = volunteering.summary(s, v, NOW)
        assert (after.approved, after.pending, after.balance) == (99 * 60, 0, 0)
        assert volunteering.decide_hours(s, [pending], approve=True, now=NOW, coordinator=c)[0].outcome == "already"
        assert volunteering.decide_hours(s, [999999], approve=True, now=NOW, coordinator=c)[0].outcome == "missing"


def test_coordinator_outside_the_subtree_cannot_decide(seeded):
    with seeded.db.transaction() as s:
        pending = s.scalar(select(HourRecord.id).where(HourRecord.state == "pending"))
        [d] = volunteering.decide_hours(s, [pending], approve=True, now=NOW, coordinator=coord(s, "o_coord_by"))
        assert d.outcome == "forbidden" and s.get(HourRecord, pending).state == "pending"


def test_star_reached_at_exactly_the_threshold_once(seeded):
    with seeded.db.transaction() as s:
        v, c = vol(s), coord(s)
        pending = s.scalar(select(HourRecord.id).where(HourRecord.state == "pending"))
        [d] = volunteering.decide_hours(s, [pending], approve=True, now=NOW, coordinator=c)
        assert d.star == 1 and v.star_level == 1
        star = s.scalar(select(VolunteerStar))
        assert (star.level, star.approved_minutes, star.hour_record_id) == (1, 6000, pending)
        push = s.scalar(select(Push).where(Push.kind == "star_level"))
        assert push.openid == "o_vol_99" and push.data["level"] == "1星"
        assert volunteering.check_stars(s, v, NOW) is None  # nothing new


def test_configurable_thresholds_and_several_stars_at_once(seeded):
    rule = Rules(stars=(10, 50, 99))
    with seeded.db.transaction() as s:
        v = vol(s)
        coord(s)
        assert rule.star_for(99 * 60) == 3 and rule.minutes_to_next_star(99 * 60) is None
        assert volunteering.check_stars(s, v, NOW, rule) == 3
        assert s.scalar(select(func.count(VolunteerStar.id))) == 3
        assert s.scalar(select(func.count(Push.id)).where(Push.kind == "star_level")) == 1
    assert Rules().star_for(100 * 60 - 1) == 0 and Rules().star_for(100 * 60) == 1
    assert Rules().minutes_to_next_star(0) == 6000 and Rules().star_for(1500 * 60) == 5


def test_summary_is_aggregated_for_thousands_of_records(svc):
    seeds.apply(svc, ["vol_teams"])
    with svc.db.transaction() as s:
        v = add_volunteer(s, "o_many", "多记录", "KW2026000950", "VT-DF", id_number(order="950"))
        start = datetime(2025, 6, 1, tzinfo=timezone.utc)
        s.execute(HourRecord.__table__.insert(), [
            {"volunteer_id": v.id, "source": "activity", "source_ref": f"bulk:{i}", "minutes": 30,
             "travel_minutes": 0, "started_at": start + timedelta(hours=2 * i),
             "ended_at": start + timedelta(hours=2 * i, minutes=30), "description": "",
             "state": "approved" if i % 4 else "pending", "created_at": start}
            for i in range(4000)])
    with svc.db.transaction() as s:
        v = vol(s, "KW2026000950")
        t0 = time.perf_counter()
        summary = volunteering.summary(s, v, NOW)
        elapsed = time.perf_counter() - t0
        assert summary.approved == 3000 * 30 and summary.pending == 1000 * 30
        in_2026 = sum(1 for i in range(4000) if i % 4 and start + timedelta(hours=2 * i) >= datetime(2025, 12, 31, 16, tzinfo=timezone.utc))
        assert summary.this_year == in_2026 * 30
        assert in_2026 > 0 and summary.star == 5 and summary.to_next_star is None
        assert len(summary.latest) == 5 and summary.latest[0].source_ref == "bulk:3999"
        assert elapsed < 0.5, elapsed


def test_two_coordinators_approving_at_once_credit_once(seeded):
    """Two sessions approve the same record at the same moment: one wins, the time bank
    is credited once, the star is recorded once."""
    with seeded.db.transaction() as s:
        pending = s.scalar(select(HourRecord.id).where(HourRecord.state == "pending"))
        c1 = coord(s).id
        other = Coordinator(team_id=coord(s).team_id, name="第二协调员")
        s.add(other)
        s.flush()
        c2 = other.id
    barrier = threading.Barrier(2)
    outcomes: list[str] = []
    errors: list[BaseException] = []

    def approve(cid):
        try:
            barrier.wait(timeout=10)
            with seeded.db.transaction() as s:
                [d] = volunteering.decide_hours(s, [pending], approve=True, now=NOW,
                                                coordinator=s.get(Coordinator, cid))
                outcomes.append(d.outcome)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=approve, args=(cid,)) for cid in (c1, c2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert sorted(outcomes) == ["already", "approved"]
    with seeded.db.transaction() as s:
        assert s.scalar(select(func.count(TimeTransaction.id)).where(TimeTransaction.kind == "deposit")) == 1
        assert timebank.balance(s, vol(s)) == 60
        assert s.scalar(select(func.count(VolunteerStar.id))) == 1
        assert timebank.audit(s).ok


def test_cli_hours_add_list_approve(seeded, tmp_path):
    runner = CliRunner()
    env = cli_env(seeded, tmp_path)
    with seeded.db.transaction() as s:
        cid = coord(s).id
    out = runner.invoke(volbot, ["hours", "add", "--volunteer", "KW2026000902", "--start", "2026-11-20 09:00",
                                 "--end", "2026-11-20 11:30", "--travel", "30", "--coordinator", str(cid)], env=env)
    assert out.exit_code == 0 and "120 min pending" in out.output, out.output
    rid = int(out.output.split()[1].rstrip(":"))
    out = runner.invoke(volbot, ["hours", "add", "--volunteer", "KW2026000902", "--start", "2026-11-20 10:00",
                                 "--end", "2026-11-20 10:30", "--coordinator", str(cid)], env=env)
    assert out.exit_code != 0 and "重叠" in out.output
    out = runner.invoke(volbot, ["hours", "list", "--volunteer", "KW2026000902", "--state", "pending"], env=env)
    assert f"{rid}\tKW2026000902\tmanual" in out.output
    out = runner.invoke(volbot, ["hours", "approve", str(rid)], env=env)
    assert out.exit_code == 0 and f"record {rid}: approved" in out.output, out.output
    out = runner.invoke(volbot, ["hours", "approve", str(rid)], env=env)
    assert f"record {rid}: already" in out.output
    out = runner.invoke(volbot, ["hours", "reject", str(rid)], env=env)
    assert out.exit_code != 0 and "--reason" in out.output
    out = runner.invoke(volbot, ["timebank", "audit"], env=env)
    assert out.exit_code == 0 and "OK" in out.output, out.output
    out = runner.invoke(volbot, ["volunteer", "approve", "KW2026000900"], env=env)
    assert out.exit_code == 0 and "KW2026000900: active" in out.output, out.output
    out = runner.invoke(volbot, ["volunteer", "reject", "KW2026000900", "--reason", "重复"], env=env)
    assert "already decided" in out.output
