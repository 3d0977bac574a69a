"""Volunteer set-ups: a team tree, coordinators, volunteers with hours at chosen levels.

The tree (codes start with VT- so they cannot clash with other domains' seeds):

    VT-KW  奎文区志愿服务大队 (brigade)
      VT-DG  东关街道分队 (detachment, street 东关街道)
        VT-DF  东风社区小队 (squad, auto,     community 东风社区)
        VT-XH  新华社区小队 (squad, approval, community 新华社区)
      VT-BY  北苑街道分队 (detachment, street 北苑街道)
        VT-BS  北苑社区小队 (squad, auto,     community 北苑社区)
      VT-YL  医疗专业分队 (professional, approval)
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

from sqlalchemy import select

from dialogue.context import Settings
from rules import pii, reports, teams
from store.models import Coordinator, Follower, HourRecord, Team, Volunteer
from tests.seeds import seed

PII_KEY = Settings().pii_key  # the key the test app runs with (the development default)

TREE = [
    {"code": "VT-KW", "name": "奎文区志愿服务大队", "kind": "brigade", "children": [
        {"code": "VT-DG", "name": "东关街道分队", "kind": "detachment", "street": "东关街道", "children": [
            {"code": "VT-DF", "name": "东风社区小队", "kind": "squad", "join_policy": "auto",
             "community": "VT-C-DF", "community_name": "东风社区", "street": "东关街道"},
            {"code": "VT-XH", "name": "新华社区小队", "kind": "squad", "join_policy": "approval",
             "community": "VT-C-XH", "community_name": "新华社区", "street": "东关街道"},
        ]},
        {"code": "VT-BY", "name": "北苑街道分队", "kind": "detachment", "street": "北苑街道", "children": [
            {"code": "VT-BS", "name": "北苑社区小队", "kind": "squad", "join_policy": "auto",
             "community": "VT-C-BS", "community_name": "北苑社区", "street": "北苑街道"},
        ]},
        {"code": "VT-YL", "name": "医疗专业分队", "kind": "professional", "join_policy": "approval"},
    ]},
]


def id_number(region: str = "370705", born: date = date(1980, 5, 1), order: str = "123") -> str:
    """A well-formed ID number with a correct MOD 11-2 check digit."""
    first = f"{region}{born:%Y%m%d}{order}"
    return first + pii.check_digit(first)


def follower(session, openid: str, phone: str | None = None) -> Follower:
    f = Follower(openid=openid, subscribed=True, phone=phone)
    session.add(f)
    session.flush()
    return f


def team(session, code: str) -> Team:
    return teams.by_code(session, code)


def add_volunteer(session, openid: str | None, name: str, number: str, team_code: str,
                  idn: str, state: str = "active") -> Volunteer:
    f = follower(session, openid) if openid else None
    sealed = pii.seal_id_number(PII_KEY, idn)
    parsed = pii.parse_id_number(idn, date(2026, 1, 1))
    v = Volunteer(number=number, follower_id=f.id if f else None, name=name, phone="13800000000",
                  id_number_enc=sealed.enc, id_number_hash=sealed.hash, id_number_last4=sealed.last4,
                  birth_year=parsed.birth_date.year, team_id=team(session, team_code).id, state=state)
    session.add(v)
    session.flush()
    return v


def add_hours(session, vol: Volunteer, minutes: int, state: str, days_ago: int, ref: str) -> HourRecord:
    end = datetime.now(timezone.utc) - timedelta(days=days_ago)
    r = HourRecord(volunteer_id=vol.id, source="activity", source_ref=ref, minutes=minutes,
                   started_at=end - timedelta(minutes=minutes), ended_at=end, state=state,
                   description="社区服务")
    session.add(r)
    session.flush()
    if state == "approved":  # set directly (no time bank credit), so count it as decide_hours would
        reports.count_approved(session, r)
    return r


@seed
def vol_teams(session):
    teams.import_rows(session, teams.rows_from_yaml({"teams": TREE}))


@seed
def vol_coordinators(session):
    """o_coord: coordinator of 东关街道分队 (东风 + 新华); o_coord_by: of 北苑街道分队."""
    if team(session, "VT-KW") is None:
        vol_teams(session)
    for openid, name, code in (("o_coord", "王协调", "VT-DG"), ("o_coord_by", "李协调", "VT-BY")):
        f = follower(session, openid)
        session.add(Coordinator(team_id=team(session, code).id, name=name, role="detachment", follower_id=f.id))
    session.flush()


@seed
def vol_volunteers(session):
    """o_vol_99: 东风 volunteer with 99 approved hours and one pending hour (→ exactly 100 h);
    o_vol_new: 东风 volunteer without records; KW2026000900: a pending sign-up in 新华."""
    if team(session, "VT-KW") is None:
        vol_teams(session)
    v = add_volunteer(session, "o_vol_99", "赵志愿", "KW2026000901", "VT-DF", id_number(order="901"))
    for i in range(99):
        add_hours(session, v, 60, "approved", days_ago=200 + i, ref=f"seed:{i}")
    add_hours(session, v, 60, "pending", days_ago=1, ref="seed:pending")
    add_volunteer(session, "o_vol_new", "钱新人", "KW2026000902", "VT-DF", id_number(order="902"))
    add_volunteer(session, "o_vol_wait", "孙待审", "KW2026000900", "VT-XH", id_number(order="900"),
                  state="pending")


@seed
def vol_pending_batch(session):
    """Three more pending records (2 h each) for o_vol_new (KW2026000902); needs vol_volunteers."""
    v = session.scalar(select(Volunteer).where(Volunteer.number == "KW2026000902"))
    for i in range(3):
        add_hours(session, v, 120, "pending", days_ago=2 + i, ref=f"seed:batch:{i}")


@seed
def vol_pending_many(session):
    """25 more pending records for o_vol_new, each with a 20-character description, so the
    review list (20 shown) does not fit one reply unpaged; needs vol_volunteers."""
    v = session.scalar(select(Volunteer).where(Volunteer.number == "KW2026000902"))
    for i in range(25):
        r = add_hours(session, v, 90, "pending", days_ago=2 + i, ref=f"seed:many:{i}")
        r.description = "社区老年食堂午餐配送和独居老人上门探访服务"
    session.flush()
