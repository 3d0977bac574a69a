"""The Volunteer Bus: schedule/change/cancel fan out one push per subscriber per
announcement, reminders follow the latest announcement, and the pushes reach WeChat once."""

from __future__ import annotations

from datetime import timedelta

import pytest
import requests
from click.testing import CliRunner
from sqlalchemy import func, select

from bot.cli import main
from pushes.scheduler import run_pass
from rules import bus, notices
from store.models import BusVisit, Community, Follower, Push
from tests import seeds
from tests.pushes_fixtures import drain
from tests.seeds.bus import in_days


def pushes(svc, **where) -> list[Push]:
    with svc.db.transaction() as s:
        q = select(Push).order_by(Push.id)
        for k, v in where.items():
            q = q.where(getattr(Push, k) == v)
        return list(s.scalars(q))


def visit_of(svc, code="BUS-DF") -> BusVisit:
    with svc.db.transaction() as s:
        return s.scalar(select(BusVisit).join(Community).where(Community.code == code))


def test_schedule_pushes_each_subscriber_once_and_reminds_the_day_before(svc):
    seeds.apply(svc, ["bus_visits"])
    visit = visit_of(svc)
    announced = pushes(svc, batch=f"bus-{visit.id}-0")
    assert sorted(p.openid for p in announced) == ["o_bus_sub1", "o_bus_sub2"]
    assert announced[0].dedup_key == f"bus:{visit.id}:0:bus_visit:o_bus_sub1"
    assert announced[0].data["services"] == "健康查体、律师服务、免费图书馆"
    reminders = pushes(svc, batch=f"bus-{visit.id}-0-reminder")
    assert len(reminders) == 2
    local = reminders[0].due_at.astimezone(bus.CHINA)
    assert (local.hour, local.date()) == (18, visit.starts_at.astimezone(bus.CHINA).date() - timedelta(days=1))
    # 巴士新华社区 has no subscribers: nothing to send
    assert pushes(svc, batch=f"bus-{visit_of(svc, 'BUS-XH').id}-0") == []


def test_change_and_cancel_are_one_push_each_and_replace_the_reminder(svc):
    seeds.apply(svc, ["bus_visits"])
    now = svc.clock.now()
    with svc.db.transaction() as s:
        visit = s.get(BusVisit, visit_of(svc).id)
        bus.change(s, visit, now=now, place="东风社区北门", reason="广场施工")
        with pytest.raises(bus.BusError):
            bus.change(s, visit, now=now, place="东风社区北门")  # nothing changed: nothing sent
    changed = pushes(svc, batch=f"bus-{visit.id}-1")
    assert len(changed) == 2 and changed[0].kind == "bus_change" and "广场施工" in changed[0].data["change"]
    assert {p.state for p in pushes(svc, batch=f"bus-{visit.id}-0-reminder")} == {"cancelled"}
    assert len(pushes(svc, batch=f"bus-{visit.id}-1-reminder", state="pending")) == 2
    with svc.db.transaction() as s:
        bus.cancel(s, s.get(BusVisit, visit.id), now=now, reason="天气原因")
        with pytest.raises(bus.BusError):
            bus.cancel(s, s.get(BusVisit, visit.id), now=now)
    assert [p.kind for p in pushes(svc, batch=f"bus-{visit.id}-2")] == ["bus_cancel"] * 2
    assert {p.state for p in pushes(svc, batch=f"bus-{visit.id}-1-reminder")} == {"cancelled"}
    with svc.db.transaction() as s:
        assert bus.upcoming(s, now, [visit.community_id]) == []


def test_unfollowed_and_blocked_followers_are_not_pushed(svc):
    seeds.apply(svc, ["bus_communities"])
    now = svc.clock.now()
    with svc.db.transaction() as s:
        df = s.scalar(select(Community).where(Community.code == "BUS-DF"))
        for openid, subscribed, blocked in (("o_bus_a", True, None), ("o_bus_b", False, None),
                                            ("o_bus_c", True, "43004 not following")):
            f = Follower(openid=openid, subscribed=subscribed, push_blocked=blocked)
            s.add(f)
            s.flush()
            assert bus.subscribe(s, f, df) and not bus.subscribe(s, f, df)
        start, end = in_days(2)
        bus.schedule(s, community=df, starts_at=start, ends_at=end, place="广场", services=["1", "2"], now=now)
        with pytest.raises(bus.BusError):
            bus.schedule(s, community=df, starts_at=start, ends_at=end, place="广场", services=["烧烤"], now=now)
        with pytest.raises(bus.BusError):
            bus.schedule(s, community=df, starts_at=end, ends_at=start, place="广场", services=["1"], now=now)
    assert [p.openid for p in pushes(svc, kind="bus_visit")] == ["o_bus_a"]


def test_a_scheduled_visit_reaches_every_subscriber_once_through_the_worker(svc, dispatcher, emulator):
    seeds.apply(svc, ["bus_visits"])
    for openid in ("o_bus_sub1", "o_bus_sub2"):  # both tapped 允许 on the visit notice (long-term)
        emulator.admin("notice-consent", openid=openid, template_id="volbot-bus-visit", accept=True)
        with svc.db.transaction() as s:
            notices.record_consent(s, openid, "volbot-bus-visit", accepted=True, source="h5_popup", now=svc.clock.now())
    visit = visit_of(svc)
    run_pass(svc)
    drain(svc)
    run_pass(svc)  # a second pass and drain change nothing
    drain(svc)
    sent = requests.get(emulator.url + "/_emulator/notices", timeout=5).json()
    assert sorted(m["openid"] for m in sent) == ["o_bus_sub1", "o_bus_sub2"] and not emulator.messages()
    assert sent[0]["template_id"] == "volbot-bus-visit" and sent[0]["data"]["thing1"]["value"] == "巴士东风社区"
    assert {p.state for p in pushes(svc, batch=f"bus-{visit.id}-0")} == {"sent"}
    # The reminders wait for their evening.
    assert {p.state for p in pushes(svc, batch=f"bus-{visit.id}-0-reminder")} == {"pending"}
    svc.clock.advance(days=3)
    run_pass(svc)
    drain(svc)
    assert len(requests.get(emulator.url + "/_emulator/notices", timeout=5).json()) == 4
    assert {p.state for p in pushes(svc, batch=f"bus-{visit.id}-0-reminder")} == {"sent"}


def test_unsubscribing_from_the_account_erases_subscriptions(wechat_plain, svc):
    seeds.apply(svc, ["bus_visits"])
    wechat_plain.event("o_bus_sub1", "unsubscribe")
    with svc.db.transaction() as s:
        assert s.scalar(select(func.count()).select_from(bus.BusSubscription)) == 1


@pytest.fixture
def cli_env(svc):
    return {"DATABASE_URL": svc.config.database_url or svc.config.sqlalchemy_url, "REDIS_URL": svc.redis_url,
            "VOLBOT_INSTANCE": str(svc.config.instance_path), "VOLBOT_ENV": "testing"}


def test_cli_schedule_change_cancel_and_status(svc, cli_env):
    seeds.apply(svc, ["bus_visits"])
    day = (svc.clock.now().astimezone(bus.CHINA).date() + timedelta(days=7)).isoformat()
    run = CliRunner().invoke
    out = run(main, ["bus", "schedule", "--community", "BUS-DF", "--date", day, "--start", "09:00", "--end", "11:00",
                     "--place", "东风广场", "--services", "健康查体,律师服务"], env=cli_env)
    assert out.exit_code == 0, out.output
    assert "2 subscriber pushes recorded" in out.output
    visit_id = int(out.output.split("#")[1].split()[0])
    out = run(main, ["bus", "change", str(visit_id), "--start", "10:00", "--end", "12:00", "--reason", "推迟一小时"],
              env=cli_env)
    assert out.exit_code == 0 and "change 1" in out.output, out.output
    out = run(main, ["push", "status", "--batch", f"bus-{visit_id}-1"], env=cli_env)
    assert "2 total · 2 queued" in out.output, out.output
    out = run(main, ["bus", "cancel", str(visit_id), "--reason", "雨天"], env=cli_env)
    assert out.exit_code == 0 and "cancelled" in out.output
    assert run(main, ["bus", "cancel", str(visit_id)], env=cli_env).exit_code != 0
    out = run(main, ["bus", "list", "--community", "BUS-DF"], env=cli_env)
    assert "东风社区文化广场" in out.output and "东风广场" not in out.output
    bad = run(main, ["bus", "schedule", "--community", "NOPE", "--date", day, "--start", "09:00", "--end", "11:00",
                     "--place", "x", "--services", "1"], env=cli_env)
    assert bad.exit_code != 0 and "NOPE" in bad.output
