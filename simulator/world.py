"""What the simulated phone shows besides the chat: the account's custom menu, the district
map with its places, the QR codes one can scan, and the demo personas (openids linked to
the demo data's coordinators, volunteers and residents).

Read-only: every query here goes through the domain's own models and store functions.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from demo import geography
from rules.access import ROLE_LABELS
from store.models import Community, Coordinator, Follower, Volunteer

PERSONA_LIMIT = 8  # per role: enough to pick from, short enough to read


def custom_menu(pages_url: str = "") -> list[dict]:
    """The custom menu's buttons as the account publishes them (menus/custom_menu.json),
    its page buttons pointing at `pages_url`."""
    from menus import custom_menu as published

    return published.load(pages_url=pages_url)["button"]


def personas(session: Session) -> list[dict]:
    """Openids of the demo data's people, so the page can act as one of them."""
    out: list[dict] = []
    coordinators = session.execute(
        select(Coordinator.name, Coordinator.role, Follower.openid)
        .join(Follower, Coordinator.follower_id == Follower.id)
        .where(Coordinator.is_demo.is_(True)).order_by(Coordinator.id).limit(PERSONA_LIMIT)
    ).all()
    out += [{"openid": o, "name": n, "role": "coordinator", "note": ROLE_LABELS.get(r, r)}
            for n, r, o in coordinators]
    volunteers = session.execute(
        select(Volunteer.name, Volunteer.number, Follower.openid)
        .join(Follower, Volunteer.follower_id == Follower.id)
        .where(Volunteer.is_demo.is_(True), Volunteer.state == "active")
        .order_by(Volunteer.id).limit(PERSONA_LIMIT)
    ).all()
    out += [{"openid": o, "name": n, "role": "volunteer", "note": f"志愿者 {num}"}
            for n, num, o in volunteers]
    taken = {p["openid"] for p in out}
    residents = session.execute(
        select(Follower.openid, Community.name)
        .outerjoin(Community, Follower.community_id == Community.id)
        .where(Follower.openid.like("o_demo_res_%")).order_by(Follower.id).limit(PERSONA_LIMIT)
    ).all()
    out += [{"openid": o, "name": f"{c or ''}居民{o[-3:]}", "role": "resident", "note": f"居民（{c or '未绑定社区'}）"}
            for o, c in residents if o not in taken]
    return out


def snapshot(session: Session, now: datetime, pages_url: str = "") -> dict:
    from simulator import places

    return {
        "menu": custom_menu(pages_url),
        "map": {"outline": [list(p) for p in geography.OUTLINE], "bounds": geography.bounds()},
        "places": places.places(session),
        "scans": places.scan_codes(session, now),
        "personas": personas(session),
    }
