"""Activity set-ups: places, projects, activities with shifts, and volunteers to sign up.

Ids are stable because every test starts from empty tables (SQLite reuses rowids from 1,
PostgreSQL restarts identities):

    places      1 东风社区志愿服务站 (VT-C-DF)   2 奎文区志愿服务广场 (plaza)   3 北苑社区志愿服务站
    activity 1  绿植换图书 (project of 东风社区小队) at place 1, in two days:
                shift 1 09:00-11:00 ×2, shift 2 14:00-16:00 ×5
    activity 2  四点半学校 (project of 东风社区小队) at place 2, NOW: shift 3 started 3 minutes
                ago, lasts 2 hours, ×5
    activity 3  义诊进社区 (project of 北苑社区小队) at place 3, in three days: shift 4 ×3,
                wanting skill "04"

Volunteers (all active): o_act_a (东风, skills 04), o_act_b, o_act_c (东风), o_act_d (北苑).
Coordinates are made up around the district centre; they are not real addresses.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from rules.activities import CHINA, add_activity
from store.models import Follower, Place, Project, SignUp
from tests.seeds import seed
from tests.seeds.volunteers import add_volunteer, id_number, team, vol_teams

CENTRE = (36.7070, 119.1190)
PLACES = [
    # code, name, kind, community, lat, lng, opening, services
    ("ACT-ST1", "东风社区志愿服务站", "station", "VT-C-DF", 36.7080, 119.1200, "周一至周五 8:30-17:30",
     ["理发", "义诊", "法律咨询", "四点半课堂"]),
    ("ACT-PZ1", "奎文区志愿服务广场", "plaza", None, 36.7150, 119.1300, "每周六 9:00-11:30",
     ["文艺演出", "便民维修", "健康义诊"]),
    ("ACT-ST2", "北苑社区志愿服务站", "station", "VT-C-BS", 36.7300, 119.1000, "周一至周六 9:00-17:00",
     ["代购代办", "助老服务"]),
]
VOLUNTEERS = [("o_act_a", "周志愿", "VT-DF", ["04"]), ("o_act_b", "吴志愿", "VT-DF", []),
              ("o_act_c", "郑志愿", "VT-DF", []), ("o_act_d", "冯志愿", "VT-BS", [])]


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(microsecond=0)


def _local_day(days: int, hour: int, minute: int = 0) -> datetime:
    day = (_now().astimezone(CHINA) + timedelta(days=days)).date()
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=CHINA)


def volunteer(session, openid: str):
    from store.models import Volunteer

    follower = session.query(Follower).filter_by(openid=openid).one()
    return session.query(Volunteer).filter_by(follower_id=follower.id).one()


@seed
def act_base(session):
    if team(session, "VT-KW") is None:
        vol_teams(session)
    from store.models import Community

    communities = {c.code: c.id for c in session.query(Community)}
    places = []
    for code, name, kind, community, lat, lng, opening, services in PLACES:
        p = Place(code=code, name=name, kind=kind, community_id=communities.get(community), lat=lat, lng=lng,
                  address=f"奎文区{name}（示例地址）", opening_times=opening, services=services,
                  star_rating=4 if kind == "plaza" else None, is_demo=True)
        session.add(p)
        session.flush()
        places.append(p)
    for n, (openid, name, team_code, skills) in enumerate(VOLUNTEERS, 1):
        v = add_volunteer(session, openid, name, f"KW20269008{n:02d}", team_code, id_number(order=f"8{n:02d}"))
        v.skills = skills
    df = Project(name="东风社区志愿服务", team_id=team(session, "VT-DF").id, description="社区日常志愿服务",
                 is_demo=True)
    bs = Project(name="北苑健康行", team_id=team(session, "VT-BS").id, is_demo=True)
    session.add_all([df, bs])
    session.flush()
    now = _now()
    add_activity(session, project=df, title="绿植换图书", place=places[0], capacity=2, now=now,
                 shifts=[(_local_day(2, 9), _local_day(2, 11), "上午场"),
                         (_local_day(2, 14), _local_day(2, 16), "下午场", 5)])
    add_activity(session, project=df, title="四点半学校", place=places[1], capacity=5, now=now,
                 shifts=[(now - timedelta(minutes=3), now + timedelta(minutes=117), "")])
    add_activity(session, project=bs, title="义诊进社区", place=places[2], capacity=3, skills=["04"], now=now,
                 shifts=[(_local_day(3, 9), _local_day(3, 11, 30), "")])


def _sign(session, openid: str, shift_id: int, state: str = "signed", position: int | None = None):
    session.add(SignUp(shift_id=shift_id, volunteer_id=volunteer(session, openid).id, state=state,
                       position=position, signed_at=_now() if state == "signed" else None))
    session.flush()


@seed
def act_full(session):
    """Shift 1 (×2) is full: o_act_b and o_act_c signed."""
    _sign(session, "o_act_b", 1)
    _sign(session, "o_act_c", 1)


@seed
def act_on_shift(session):
    """o_act_a and o_act_b are signed up for shift 3, which is on now."""
    _sign(session, "o_act_a", 3)
    _sign(session, "o_act_b", 3)


@seed
def act_waiting(session):
    """o_act_a is first on shift 1's waitlist (use with act_full)."""
    _sign(session, "o_act_a", 1, state="waitlisted", position=1)


@seed
def act_soon(session):
    """Shift 5: 社区巡防 at place 1, in 3 hours, ×3 with a minimum of 3 (at risk, inside the
    48-hour call-out window); o_act_b signed up for it."""
    project = session.query(Project).filter_by(name="东风社区志愿服务").one()
    place = session.query(Place).filter_by(code="ACT-ST1").one()
    start = _now() + timedelta(hours=3)
    activity = add_activity(session, project=project, title="社区巡防", place=place, capacity=3, now=_now(),
                            shifts=[(start, start + timedelta(hours=2), "")])
    activity.shifts[0].min_staff = 3
    session.flush()
    _sign(session, "o_act_b", activity.shifts[0].id)


@seed
def act_unreliable(session):
    """o_act_d missed three shifts in the last month (their places settled absent)."""
    project = session.query(Project).filter_by(name="北苑健康行").one()
    for days in (7, 14, 21):
        start = _now() - timedelta(days=days)
        activity = add_activity(session, project=project, title="助老上门", address="北苑小区", capacity=3,
                                now=_now(), shifts=[(start, start + timedelta(hours=2), "")])
        session.add(SignUp(shift_id=activity.shifts[0].id, volunteer_id=volunteer(session, "o_act_d").id,
                           state="signed", attendance="absent", signed_at=start - timedelta(days=1)))
    session.flush()


@seed
def callout_order(session):
    """After dispatch_world: a repair order in 樱园 that nobody took, called out to 李师傅
    (who opted in to call-outs; the only 樱园 volunteer with the skill)."""
    from datetime import date

    from menus.catalog import load
    from rules import callouts
    from rules import orders as order_rules
    from store.models import Community, Volunteer

    menu = load()
    sub = menu.sub("08-01")
    resident = session.query(Follower).filter_by(openid="o_dres").one()
    community = session.query(Community).filter_by(code="DC-YY").one()
    order, _ = order_rules.create_order(
        session, follower=resident, sub=sub, category_name=menu.category_of(sub).name, description="水管漏水",
        address="樱园小区3号楼2单元501", phone="13812345678", preferred=order_rules.Preferred(date(2030, 1, 9), "pm"),
        now=_now(), community_id=community.id)
    li = session.query(Volunteer).filter_by(number="KW2026100001").one()
    callouts.opt_in(session, li, _now())
    callouts.send_order_callout(session, order.id, _now())
