"""Places on the simulator's map and the QR codes one can "scan": plazas and stations
(scene `st:<id>`), upcoming activities (scene `act:<id>`) and communities (`cm:<code>`).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from store.models import Community

MAP_LIMIT = 800
SCAN_ACTIVITIES = 40
SCAN_COMMUNITIES = 40


def places(session: Session) -> list[dict]:
    """Dots for the map: active plazas and stations, then communities without a place."""
    from store.models.places import Place

    out = []
    for p in session.scalars(select(Place).where(Place.active.is_(True))
                             .order_by(Place.kind.desc(), Place.id).limit(MAP_LIMIT)):
        out.append({"kind": p.kind, "name": p.name, "lat": p.lat, "lng": p.lng,
                    "label": p.address or p.name})
    if not out:
        for c in session.scalars(select(Community).where(Community.lat.is_not(None))
                                 .order_by(Community.id).limit(MAP_LIMIT)):
            out.append({"kind": "community", "name": c.name, "lat": c.lat, "lng": c.lng,
                        "label": f"{c.street}{c.name}"})
    return out


def scan_codes(session: Session, now: datetime) -> list[dict]:
    """QR codes to pick from, each with the scene string WeChat would report."""
    from rules import activities
    from store.models.places import Place

    out, seen = [], set()
    for view in activities.upcoming(session, now, limit=SCAN_ACTIVITIES):
        a = view.shift.activity
        if a.id not in seen:
            seen.add(a.id)
            out.append({"group": "活动签到码", "name": f"{a.title} {activities.when_label(a.starts_at, a.ends_at)}",
                        "scene": a.scene})
    for p in session.scalars(select(Place).where(Place.active.is_(True)).order_by(Place.kind.desc(), Place.id)):
        out.append({"group": "广场 / 服务站二维码", "name": p.name, "scene": p.scene})
    for c in session.scalars(select(Community).order_by(Community.id).limit(SCAN_COMMUNITIES)):
        out.append({"group": "社区二维码", "name": c.name, "scene": f"cm:{c.code}"})
    return out
