"""Places on the simulator's map and the QR codes one can "scan": communities, plazas and
stations (scene `st:<id>`), and upcoming activities (scene `act:<id>`).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from store.models import Community

MAP_LIMIT = 600


def places(session: Session) -> list[dict]:
    """Dots for the map: every located place, with the label a location message carries."""
    out = []
    for c in session.scalars(select(Community).where(Community.lat.is_not(None))
                             .order_by(Community.id).limit(MAP_LIMIT)):
        out.append({"kind": "community", "name": c.name, "lat": c.lat, "lng": c.lng,
                    "label": f"潍坊市奎文区{c.street}{c.name}"})
    return out


def scan_codes(session: Session, now: datetime) -> list[dict]:
    """QR codes to pick from: each with the scene string WeChat would report."""
    out = []
    for c in session.scalars(select(Community).order_by(Community.id).limit(60)):
        out.append({"group": "社区二维码", "name": c.name, "scene": f"cm:{c.code}"})
    return out
