"""Every console page and action, tried across subtrees by URL and by form: a coordinator
of 东风 (or of 东关 detachment) reaching for 北苑's rows gets 404 — exactly as for a row
that does not exist — and nothing changes in SQL. Parents see their children; the district
sees everything."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select

from rules import bus, inbox
from rules.certificates import issue
from store.models import (
    AuditLog,
    BusVisit,
    CoordinatorMessage,
    Follower,
    HourRecord,
    Offer,
    Order,
    OrderEvent,
    Push,
    ServiceCertificate,
    Team,
    Volunteer,
)
from store.models.activities import Activity, Project, Shift
from store.models.places import Place
from tests.console_support import Browser, signed_in
from tests.seeds import apply
from tests.seeds.volunteers import team


@pytest.fixture
def rows(svc):
    """Ids of 北苑 (other subtree) and 东风 (own subtree) rows."""
    apply(svc, ["console_world"])
    now = datetime.now(timezone.utc)
    with svc.db.transaction() as s:
        bs, df = team(s, "VT-BS"), team(s, "VT-DF")

        def first(model, *where):
            return s.scalar(select(model.id).where(*where).order_by(model.id))

        bs_vol = s.scalar(select(Volunteer).where(Volunteer.number == "KW2026000200"))
        visit = bus.schedule(s, community=bs.community, starts_at=now + timedelta(days=3),
                             ends_at=now + timedelta(days=3, hours=2), place="北苑广场", services=["health"], now=now)
        cert = issue(s, bs_vol, bs, coordinator_id=None, now=now, start=None, end=None)
        bs_res = s.scalar(select(Follower).where(Follower.openid == "o_BS_res"))
        bs_res.community_id = bs.community_id
        message = inbox.leave(s, bs_res, flow="order", step="phone", text="BS甲留言：请打电话", now=now)
        return {
            "bs_vol": bs_vol.id, "bs_pending": first(Volunteer, Volunteer.number == "KW2026000202"),
            "bs_hour": first(HourRecord, HourRecord.source_ref == "BS:p0"),
            "bs_order": first(Order, Order.community_id == bs.community_id),
            "bs_activity": first(Activity, Activity.title == "BS周末课堂"),
            "bs_project": first(Project, Project.team_id == bs.id),
            "bs_place": first(Place, Place.code == "ST-BS"), "bs_visit": visit.id, "bs_cert": cert.id,
            "bs_team": bs.id, "bs_community": bs.community_id, "bs_message": message.id,
            "df_vol": first(Volunteer, Volunteer.number == "KW2026000100"),
            "df_hour": first(HourRecord, HourRecord.source_ref == "DF:p0"),
            "df_order": first(Order, Order.community_id == df.community_id, Order.status == "submitted"),
        }


def fingerprint(svc) -> dict:
    """What an action could change, to compare before and after."""
    with svc.db.session() as s:
        return {
            "hours": sorted(s.execute(select(HourRecord.id, HourRecord.state, HourRecord.description)).all()),
            "volunteers": sorted(s.execute(select(Volunteer.id, Volunteer.state)).all()),
            "orders": sorted(s.execute(select(Order.id, Order.status)).all()),
            "events": s.scalar(select(func.count()).select_from(OrderEvent)),
            "offers": s.scalar(select(func.count()).select_from(Offer)),
            "activities": sorted(s.execute(select(Activity.id, Activity.title, Activity.state)).all()),
            "shifts": s.scalar(select(func.count()).select_from(Shift)),
            "places": sorted(s.execute(select(Place.id, Place.opening_times, Place.active)).all()),
            "visits": sorted(s.execute(select(BusVisit.id, BusVisit.state, BusVisit.change_no)).all()),
            "pushes": s.scalar(select(func.count()).select_from(Push)),
            "certificates": s.scalar(select(func.count()).select_from(ServiceCertificate)),
            "messages": sorted(s.execute(select(CoordinatorMessage.id, CoordinatorMessage.handled,
                                                CoordinatorMessage.answered_at)).all()),
            "audit": s.scalar(select(func.count()).select_from(AuditLog).where(AuditLog.action != "login")),
        }


PAGES = [
    "/console/volunteers/{bs_vol}", "/console/volunteers/{bs_vol}/certificate", "/console/certificates/{bs_cert}.pdf",
    "/console/orders/{bs_order}", "/console/activities/{bs_activity}", "/console/activities/{bs_activity}/edit",
    "/console/places/{bs_place}", "/console/bus/{bs_visit}", "/console/bus/{bs_visit}/progress.json",
    "/console/messages/{bs_message}",
]


@pytest.mark.parametrize("username", ["df_lead", "dg_lead"])
@pytest.mark.parametrize("path", PAGES)
def test_pages_of_another_subtree_are_not_found(base_url, rows, username, path):
    b = signed_in(base_url, username)
    r = b.get(path.format(**rows))
    assert r.status_code == 404, (username, path, r.status_code)
    assert "BS甲" not in r.text and "北苑" not in r.text


@pytest.mark.parametrize("path", PAGES)
def test_the_district_sees_them(base_url, rows, path):
    r = signed_in(base_url, "admin").get(path.format(**rows))
    assert r.status_code == (200 if not path.endswith(".pdf") or has_cjk_font() else 503), path


def has_cjk_font() -> bool:
    """Without one a certificate PDF is 503 (console.certificate), never a page of boxes."""
    from rules.certificates import FontMissing, find_font

    try:
        find_font()
    except FontMissing:
        return False
    return True


def test_a_parent_sees_its_children(base_url, rows):
    b = signed_in(base_url, "dg_lead")
    assert b.get(f"/console/volunteers/{rows['df_vol']}").status_code == 200
    assert b.get(f"/console/orders/{rows['df_order']}").status_code == 200


def test_lists_filtered_to_another_subtree_stay_empty(base_url, rows):
    b = signed_in(base_url, "df_lead")
    for path in (f"/console/volunteers?team={rows['bs_team']}", f"/console/hours?team={rows['bs_team']}",
                 f"/console/hours?state=approved&team={rows['bs_team']}", f"/console/orders?community={rows['bs_community']}",
                 "/console/volunteers?q=BS", "/console/places?q=BS", "/console/activities", "/console/bus",
                 "/console/audit", "/console/", "/console/messages?state=all"):
        page = b.get(path)
        assert page.status_code == 200, path
        assert "KW20260002" not in page.text and "BS甲" not in page.text and "BS周末课堂" not in page.text, path
        assert "北苑广场" not in page.text and "BS志愿服务站" not in page.text, path
    report = b.get("/console/reports/hours.csv").content.decode("utf-8-sig")
    assert "北苑" not in report and "东风社区小队" in report


ACTIONS = [  # who, path, form (a list of pairs, so ids may repeat)
    ("df_lead", "/console/hours/decide", [("ids", "{bs_hour}"), ("decision", "approve")]),
    ("df_lead", "/console/hours/decide", [("ids", "{df_hour}"), ("ids", "{bs_hour}"), ("decision", "approve")]),
    ("df_lead", "/console/hours/decide", [("ids", "{bs_hour}"), ("decision", "reject"), ("reason", "x")]),
    ("df_lead", "/console/volunteers/{bs_pending}/decide", [("decision", "approve")]),
    ("df_lead", "/console/volunteers/{bs_vol}/certificate", []),
    ("df_lead", "/console/orders/{bs_order}/assign", [("volunteer_id", "{df_vol}")]),
    ("df_lead", "/console/orders/{df_order}/assign", [("volunteer_id", "{bs_vol}")]),
    ("df_lead", "/console/activities/{bs_activity}/edit", [("project_id", "{bs_project}"), ("title", "改"),
                                                           ("day", "2030-01-01"), ("start", "09:00"),
                                                           ("end", "10:00"), ("capacity", "3")]),
    ("df_lead", "/console/activities/{bs_activity}/shifts", [("start", "09:00"), ("end", "10:00"), ("capacity", "3")]),
    ("df_lead", "/console/activities/{bs_activity}/cancel", [("reason", "x")]),
    ("dg_lead", "/console/places/{bs_place}", [("opening_times", "全天"), ("active", "1")]),
    ("dg_lead", "/console/bus", [("community_id", "{bs_community}"), ("day", "2030-05-04"), ("start", "09:00"),
                                 ("end", "10:00"), ("place", "x"), ("services", "health")]),
    ("dg_lead", "/console/bus/{bs_visit}/change", [("day", "2030-05-04"), ("start", "09:00"), ("end", "10:00"),
                                                   ("place", "x"), ("services", "health")]),
    ("dg_lead", "/console/bus/{bs_visit}/cancel", [("reason", "x")]),
    ("df_lead", "/console/messages/{bs_message}/answer", [("answer", "越权回复")]),
    ("dg_lead", "/console/messages/{bs_message}/handle", [("note", "越权处理")]),
]


@pytest.mark.parametrize("who,path,form", ACTIONS, ids=[f"{a[0]}:{a[1]}:{i}" for i, a in enumerate(ACTIONS)])
def test_actions_on_another_subtree_fail_and_change_nothing(base_url, svc, rows, who, path, form):
    b = signed_in(base_url, who)
    before = fingerprint(svc)
    r = b.post(path.format(**rows), [(k, v.format(**rows)) for k, v in form])
    assert r.status_code == 404, (who, path, r.status_code, r.text[:300])
    assert fingerprint(svc) == before


def test_forms_naming_another_subtree_are_refused(base_url, svc, rows):
    b = signed_in(base_url, "df_lead")
    before = fingerprint(svc)
    manual = b.post("/console/hours/new", {"number": "KW2026000200", "day": "2026-01-05", "start": "09:00",
                                           "minutes": "60", "description": "越权"})
    activity = b.post("/console/activities/new", {"project_id": rows["bs_project"], "title": "越权活动",
                                                  "day": "2030-03-02", "start": "09:00", "end": "10:00", "capacity": "3"})
    assert manual.status_code == activity.status_code == 400
    assert fingerprint(svc) == before


def test_role_limits(base_url, svc, rows):
    """Squads may not manage places or the bus, nor read the annual rankings."""
    b = signed_in(base_url, "bs_lead")
    before = fingerprint(svc)
    assert b.post(f"/console/places/{rows['bs_place']}", {"opening_times": "全天"}).status_code == 403
    assert b.post(f"/console/bus/{rows['bs_visit']}/cancel", {"reason": "x"}).status_code == 403
    assert b.get("/console/reports/project_ranking.xlsx").status_code == 403
    assert fingerprint(svc) == before


def test_a_deactivated_account_is_signed_out(base_url, svc, rows):
    b = signed_in(base_url, "df_lead")
    with svc.db.transaction() as s:
        from tests.seeds.console import coordinator

        coordinator(s, "df_lead").active = False
    assert b.get("/console/").status_code == 302
    assert Browser(base_url).login("df_lead").status_code == 401


def test_a_team_without_a_path_fails_closed(base_url, svc, rows):
    b = signed_in(base_url, "df_lead")
    with svc.db.transaction() as s:
        s.get(Team, team(s, "VT-DF").id).path = "/"
    assert b.get("/console/volunteers").status_code == 404
