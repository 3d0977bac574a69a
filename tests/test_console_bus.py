"""The bus page: scheduling through `rules.bus`, the fan-out's progress counted from the
push rows of the batch, and the real push worker (against the WeChat emulator) taking it to
100%."""

from __future__ import annotations

import time

import requests
from sqlalchemy import func, select

from pushes import scheduler
from rules import notices
from store.models import AuditLog, BusVisit, Community, Push
from tests.console_support import signed_in
from tests.pushes_fixtures import FAST, drain
from tests.seeds import apply


def community_id(svc, code):
    with svc.db.session() as s:
        return s.scalar(select(Community.id).where(Community.code == code))


def schedule(b, cid, day="2030-05-04", **extra):
    form = {"community_id": cid, "day": day, "start": "09:00", "end": "11:30", "place": "东风社区广场"}
    form.update(extra)
    return b.post("/console/bus", list(form.items()) + [("services", "health"), ("services", "haircut")])


def test_schedule_change_cancel_with_progress(base_url, svc):
    apply(svc, ["console_world", "console_bus_subscribers"])
    b = signed_in(base_url, "dg_lead")
    r = schedule(b, community_id(svc, "VT-C-DF"))
    assert r.status_code == 302
    with svc.db.session() as s:
        visit = s.scalar(select(BusVisit))
        assert s.scalar(select(func.count()).select_from(Push).where(Push.batch == f"bus-{visit.id}-0")) == 10
    p = b.get(f"/console/bus/{visit.id}/progress.json").json()
    assert p == {"batch": f"bus-{visit.id}-0", "total": 10, "done": 0, "failed": 0, "percent": 0,
                 "finished": False, "states": {"pending": 10}, "reasons": ""}
    with svc.db.transaction() as s:  # the worker's part, as far as the console can tell
        ids = list(s.scalars(select(Push.id).where(Push.batch == f"bus-{visit.id}-0").order_by(Push.id).limit(4)))
        for push in s.scalars(select(Push).where(Push.id.in_(ids))):
            push.state = "sent"
    assert b.get(f"/console/bus/{visit.id}/progress.json").json()["percent"] == 40
    page = b.get(f"/console/bus/{visit.id}").text
    assert "东风社区" in page and "首次通知" in page
    b.post(f"/console/bus/{visit.id}/change", [("day", "2030-05-04"), ("start", "14:00"), ("end", "16:00"),
                                               ("place", "东风社区广场"), ("services", "health"), ("reason", "上午有雨")])
    assert b.get(f"/console/bus/{visit.id}/progress.json").json()["batch"] == f"bus-{visit.id}-1"
    b.post(f"/console/bus/{visit.id}/cancel", {"reason": "车辆检修"})
    with svc.db.session() as s:
        visit = s.get(BusVisit, visit.id)
        actions = list(s.scalars(select(AuditLog.action).where(AuditLog.entity == "bus_visit").order_by(AuditLog.id)))
    assert visit.state == "cancelled" and visit.change_no == 2
    assert actions == ["bus.schedule", "bus.change", "bus.cancel"]


def test_squad_leads_see_the_bus_but_cannot_schedule(base_url, svc):
    apply(svc, ["console_world"])
    b = signed_in(base_url, "df_lead")
    assert b.get("/console/bus").status_code == 200
    assert schedule(b, community_id(svc, "VT-C-DF")).status_code == 403
    with svc.db.session() as s:
        assert s.scalar(select(func.count()).select_from(BusVisit)) == 0


def test_the_push_worker_takes_the_fan_out_to_100_percent(base_url, svc, dispatcher, emulator):
    apply(svc, ["console_world", "console_bus_subscribers"])
    b = signed_in(base_url, "admin")
    schedule(b, community_id(svc, "VT-C-DF"))
    with svc.db.transaction() as s:  # every subscriber but one tapped 允许 on the visit notice
        visit_id = s.scalar(select(BusVisit.id))
        openids = sorted(s.scalars(select(Push.openid).where(Push.batch == f"bus-{visit_id}-0")))
        for openid in openids[1:]:
            notices.record_consent(s, openid, "volbot-bus-visit", accepted=True, source="h5_popup", now=svc.clock.now())
    for openid in openids[1:]:
        emulator.admin("notice-consent", openid=openid, template_id="volbot-bus-visit", accept=True)
    deadline = time.monotonic() + 60
    while True:
        scheduler.run_pass(svc, FAST)
        drain(svc)
        p = b.get(f"/console/bus/{visit_id}/progress.json").json()
        if p["finished"] or time.monotonic() > deadline:
            break
    assert p["percent"] == 100 and p["done"] == 10 and p["failed"] == 1 and p["reasons"] == "用户未订阅此通知 1"
    sent = requests.get(emulator.url + "/_emulator/notices", timeout=5).json()
    assert sorted(n["openid"] for n in sent) == openids[1:]
    assert not [m for m in emulator.messages() if m["template_id"].startswith("volbot-bus")]  # notices, not templates


def test_a_paused_kind_is_on_every_console_page_until_resumed(base_url, svc):
    """43116 (WeChat banned the template) pauses the kind; staff see it on every page."""
    from datetime import datetime, timezone

    apply(svc, ["console_world"])
    now = datetime.now(timezone.utc)
    with svc.db.transaction() as s:
        notices.pause(s, "bus_visit", "volbot-bus-visit", "43116 template banned", now)
    b = signed_in(base_url, "df_lead")
    page = b.get("/console/bus").text
    assert "暂停发送" in page and "bus_visit（volbot-bus-visit）" in page and "resume-kind" in page
    with svc.db.transaction() as s:
        notices.resume(s, "bus_visit", now)
    assert "暂停发送" not in b.get("/console/bus").text
