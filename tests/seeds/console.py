"""Console set-ups: the volunteers' team tree (VT-*) with a coordinator login at every
level, and data in two sibling subtrees so access tests can reach across.

    VT-KW  brigade        admin      (sees everything)
      VT-DG  detachment   dg_lead    (东风 + 新华)
        VT-DF  squad      df_lead, df_second (two coordinators: the two-person rule)
        VT-XH  squad
      VT-BY  detachment   by_lead
        VT-BS  squad      bs_lead

东风 (VT-DF) and 北苑 (VT-BS) each get volunteers, pending and approved hours, a manual entry
by their own lead, orders in their community, a project with an activity, and a place.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from console.accounts import hash_password
from rules import activities
from store.models import Coordinator
from store.models.activities import Project
from store.models.places import Place
from tests.seeds import seed
from tests.seeds.orders import place_order, resident
from tests.seeds.volunteers import add_hours, add_volunteer, id_number, team, vol_teams

PASSWORD = "correct horse battery"
LOGINS = [  # username, name, team code, role
    ("admin", "区大队管理员", "VT-KW", "brigade"),
    ("dg_lead", "东关分队长", "VT-DG", "detachment"),
    ("df_lead", "东风小队长", "VT-DF", "squad"),
    ("df_second", "东风副队长", "VT-DF", "squad"),
    ("by_lead", "北苑分队长", "VT-BY", "detachment"),
    ("bs_lead", "北苑小队长", "VT-BS", "squad"),
]
_hash: list[str] = []  # one Argon2 hash for every seeded login (hashing is slow on purpose)


def password_hash() -> str:
    if not _hash:
        _hash.append(hash_password(PASSWORD))
    return _hash[0]


@seed
def console_logins(session):
    if team(session, "VT-KW") is None:
        vol_teams(session)
    for username, name, code, role in LOGINS:
        session.add(Coordinator(team_id=team(session, code).id, name=name, role=role, username=username,
                                password_hash=password_hash(), active=True))
    session.flush()


def coordinator(session, username: str) -> Coordinator:
    from sqlalchemy import select

    return session.scalar(select(Coordinator).where(Coordinator.username == username))


@seed
def console_world(session):
    """Two sibling subtrees with volunteers, hours, orders, an activity and a place each."""
    console_logins(session)
    now = datetime.now(timezone.utc)
    for code, prefix, order_base in (("VT-DF", "DF", 100), ("VT-BS", "BS", 200)):
        squad = team(session, code)
        active = add_volunteer(session, f"o_{prefix}_vol", f"{prefix}甲", f"KW2026{order_base:06d}", code,
                               id_number(order=f"{order_base}"))
        active.phone = f"139{order_base:04d}{order_base + 1234:04d}"
        active.skills = ["08", "05"]
        add_volunteer(session, f"o_{prefix}_vol2", f"{prefix}乙", f"KW2026{order_base + 1:06d}", code,
                      id_number(order=f"{order_base + 1}")).skills = ["08"]
        add_volunteer(session, None, f"{prefix}待审", f"KW2026{order_base + 2:06d}", code,
                      id_number(order=f"{order_base + 2}"), state="pending")
        for i in range(3):
            add_hours(session, active, 120, "pending", days_ago=2 + i, ref=f"{prefix}:p{i}")
        for i in range(5):
            add_hours(session, active, 90, "approved", days_ago=20 + i, ref=f"{prefix}:a{i}")
        manual = add_hours(session, active, 60, "pending", days_ago=10, ref=f"{prefix}:manual")
        manual.source = "manual"
        manual.recorded_by = coordinator(session, "df_lead" if code == "VT-DF" else "bs_lead").id
        manual.description = "补录：社区清扫"
        res = resident(session, f"o_{prefix}_res", phone="13700001111")
        order = place_order(session, res, sub_code="08-01", now=now)
        order.community_id = squad.community_id
        done = place_order(session, res, sub_code="05-03", status="completed", now=now - timedelta(days=3))
        done.community_id = squad.community_id
        done.rating = 5
        project = Project(name=f"{prefix}四点半学校", team_id=squad.id)
        session.add(project)
        session.add(Place(code=f"ST-{prefix}", name=f"{prefix}志愿服务站", kind="station",
                          community_id=squad.community_id, team_id=squad.id, address=f"{prefix}路1号",
                          lat=36.7, lng=119.1, opening_times="周六 9:00-11:30", services=["理发"]))
        session.flush()
        activities.add_activity(session, project=project, title=f"{prefix}周末课堂",
                                shifts=[(now + timedelta(days=2), now + timedelta(days=2, hours=2), "上午")],
                                capacity=5, now=now)
    session.flush()



@seed
def console_bus_subscribers(session):
    """Ten followers subscribed to the bus in 东风 (VT-DF's community), three in 北苑."""
    from store.models import BusSubscription, Follower

    for code, prefix, n in (("VT-DF", "df", 10), ("VT-BS", "bs", 3)):
        community_id = team(session, code).community_id
        for i in range(n):
            f = Follower(openid=f"o_bus_{prefix}_{i}", subscribed=True)
            session.add(f)
            session.flush()
            session.add(BusSubscription(follower_id=f.id, community_id=community_id, source="qr"))
    session.flush()
