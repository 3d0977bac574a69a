"""Phones in the console: masked on every page, found by their last four or whole, and shown
in full only on an explicit POST with a reason, once, uncached and audited; never to a
coordinator outside the row's subtree."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from rules.audit import PHONE_REVEAL
from rules.audit_actions import action_name
from store.models import AuditLog, CoordinatorMessage, Follower, Order, Team, Volunteer
from tests.console_support import one, signed_in
from tests.seeds import apply

DF_PHONE = "13901001334"  # 东风's active volunteer DF甲 (tests/seeds/console.py)
ORDER_PHONE = "13800138000"  # the phone given with the order (tests/seeds/orders.py)


@pytest.fixture
def world(svc):
    apply(svc, ["console_world"])
    return svc



def reveals(svc) -> list[AuditLog]:
    with svc.db.session() as s:
        return list(s.scalars(select(AuditLog).where(AuditLog.action == PHONE_REVEAL).order_by(AuditLog.id)))


def test_a_volunteers_phone_is_revealed_with_a_reason_and_audited(base_url, world):
    vid = one(world, select(Volunteer.id).where(Volunteer.number == "KW2026000100"))
    b = signed_in(base_url, "df_lead")
    page = b.get(f"/console/volunteers/{vid}").text
    assert "139****1334" in page and DF_PHONE not in page and "查看完整手机号" in page
    # Found by the last four (kept in clear for that), masked in the list.
    listing = b.get("/console/volunteers?q=1334").text
    assert "DF甲" in listing and "139****1334" in listing and DF_PHONE not in listing
    # No reason, no number; no CSRF token, refused.
    no_reason = b.post(f"/console/volunteers/{vid}/phone", {"reason": "  "})
    assert no_reason.status_code == 302 and reveals(world) == []
    assert b.post(f"/console/volunteers/{vid}/phone", {"reason": "确认活动时间"}, csrf=False).status_code == 400
    shown = b.post(f"/console/volunteers/{vid}/phone", {"reason": "确认活动时间"})
    assert shown.status_code == 200 and DF_PHONE in shown.text and f'href="tel:{DF_PHONE}"' in shown.text
    assert "no-store" in shown.headers["Cache-Control"]
    entry, = reveals(world)
    assert (entry.actor, entry.entity, entry.entity_id, entry.reason) == ("东风小队长", "volunteer", str(vid), "确认活动时间")
    assert entry.after == {"field": "phone"} and entry.ip
    assert DF_PHONE not in json.dumps([entry.before, entry.after, entry.reason], ensure_ascii=False)
    # The detail page afterwards is masked again: shown once.
    assert DF_PHONE not in b.get(f"/console/volunteers/{vid}").text
    assert action_name(PHONE_REVEAL) == "查看完整电话"


def test_coordinators_outside_the_subtree_are_refused(base_url, world):
    vid = one(world, select(Volunteer.id).where(Volunteer.number == "KW2026000100"))
    oid = one(world, select(Order.id).join(Order.community).where(Order.status == "submitted").order_by(Order.id))
    b = signed_in(base_url, "bs_lead")  # 北苑's squad lead: 东风's rows are not theirs
    for path in (f"/console/volunteers/{vid}/phone", f"/console/orders/{oid}/phone"):
        refused = b.post(path, {"reason": "想看看"})
        # Not found, as every console URL answers for a row outside the subtree (rules.access).
        assert refused.status_code == 404 and DF_PHONE not in refused.text and ORDER_PHONE not in refused.text
    assert reveals(world) == []


def test_an_orders_phone_for_the_coordinator_who_must_call(base_url, world):
    oid = one(world, select(Order.id).where(Order.status == "submitted").order_by(Order.id))
    b = signed_in(base_url, "dg_lead")  # 东关 detachment: 东风's order is in its subtree
    page = b.get(f"/console/orders/{oid}").text
    assert "138****8000" in page and ORDER_PHONE not in page
    shown = b.post(f"/console/orders/{oid}/phone", {"reason": "志愿者联系不上居民"})
    assert shown.status_code == 200 and ORDER_PHONE in shown.text
    entry, = reveals(world)
    assert (entry.entity, entry.entity_id, entry.reason) == ("order", str(oid), "志愿者联系不上居民")
    # A resident's message for staff: the phone remembered for them.
    with world.db.transaction() as s:
        res = s.scalar(select(Follower).where(Follower.openid == "o_DF_res"))
        m = CoordinatorMessage(follower_id=res.id, flow="order", step="address", text="请打电话给我",
                               team_id=s.scalar(select(Team.id).where(Team.code == "VT-DF")))
        s.add(m)
        s.flush()
        mid = m.id
    assert "137****1111" in b.get(f"/console/messages/{mid}").text
    shown = b.post(f"/console/messages/{mid}/phone", {"reason": "居民留言要求回电"})
    assert shown.status_code == 200 and "13700001111" in shown.text
    assert [(e.entity, e.entity_id) for e in reveals(world)] == [("order", str(oid)), ("message", str(mid))]
