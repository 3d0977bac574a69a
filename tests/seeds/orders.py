"""Order set-ups: communities with positions, and residents with orders in chosen states.

Community codes start with OC- so they cannot clash with other domains' seeds. Positions are
around Kuiwen (Weifang): 樱园社区 and 金都社区 lie about 1 km apart, 北海社区 ~6 km away.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from menus.catalog import load
from rules import orders as store
from store.models import Community, Follower
from tests.seeds import seed

COMMUNITIES = [
    ("OC-YY", "樱园社区", "广文街道", 36.7080, 119.1330),
    ("OC-JD", "金都社区", "广文街道", 36.7120, 119.1430),
    ("OC-DF", "东方社区", "东关街道", 36.7020, 119.1250),
    ("OC-BH", "北海社区", "北苑街道", 36.7600, 119.1400),
]
NEAR_YINGYUAN = (36.7085, 119.1335)  # a location a few steps from 樱园社区


@seed
def order_communities(session):
    for code, name, street, lat, lng in COMMUNITIES:
        session.add(Community(code=code, name=name, street=street, lat=lat, lng=lng))
    session.flush()


def resident(session, openid: str, phone: str | None = None) -> Follower:
    f = Follower(openid=openid, subscribed=True, phone=phone)
    session.add(f)
    session.flush()
    return f


def place_order(session, follower: Follower, *, sub_code: str = "08-01", status: str = "submitted",
                now: datetime | None = None) -> store.Order:
    """An order made the way the form makes it, then moved along by staff to `status`."""
    now = now or datetime.now(timezone.utc)
    menu = load()
    sub = menu.sub(sub_code)
    order, _ = store.create_order(
        session, follower=follower, sub=sub, category_name=menu.category_of(sub).name,
        description="厨房水龙头一直滴水", address="樱园小区3号楼2单元501", phone="13800138000",
        preferred=store.Preferred((now + timedelta(days=1)).astimezone(store.CHINA).date(), "pm"),
        now=now,
    )
    path = {"submitted": [], "accepted": ["accepted"], "in_service": ["accepted", "in_service"],
            "completed": ["accepted", "in_service", "completed"], "cancelled": ["cancelled"]}[status]
    staff = store.Actor("coordinator", None)
    for step in path:
        store.transition(session, order, step, actor=staff, now=now, reason="测试")
    return order


@seed
def order_resident_with_orders(session):
    """o_res_orders: one order waiting, one in service, one completed (to rate)."""
    f = resident(session, "o_res_orders", phone="13800138000")
    place_order(session, f, sub_code="08-01", status="submitted")
    place_order(session, f, sub_code="05-03", status="in_service")
    place_order(session, f, sub_code="03-02", status="completed")
