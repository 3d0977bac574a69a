"""The demo district: a Kuiwen-shaped data set generated from a fixed seed, written through
each domain's own store functions so the demo obeys the same rules as real data.

Shape (from the district report): 1 brigade, 75 detachments (8 sub-districts + 67
departments and units), 100+ squads (one per community plus schools), 12 professional
detachments; 13 star-rated plazas and 260+ stations inside the district outline; the 12/48
needs menu; 150 projects with upcoming activities and shifts; the Volunteer Bus route with
the next weeks' visits; a few hundred volunteers with varied approved hours (some at every
star level, credited to the time bank by approval); coordinators with console logins;
residents who follow the account; a year of the needs loop (a closed survey, unmet needs,
projects linked to sub-categories: `demo.needs`).

Everything generated is marked: `is_demo` where the model has it; otherwise codes start
with "DEMO" (teams, places, communities, bus), openids with "o_demo_" (followers) and hour
records' `source_ref` with "DEMO:".
"""

from __future__ import annotations

import calendar
import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from demo import geography, names
from store.models import Community, Coordinator, Follower, Team, Volunteer

CHINA = ZoneInfo("Asia/Shanghai")
SEED = 20261128
PREFIX = "DEMO"
DEMO_PASSWORD = "demo-pass-2026"  # printed by `volbot demo`; demo logins only

COMMUNITY_WORDS = (
    "樱园 金都 新华 胜利 和平 民生 东风 鸢飞 福寿 清平 向阳 阳光 育英 虞河 白浪 月河 健康 幸福 花园 锦绣 "
    "东苑 西苑 南苑 翠园 丽景 恒信 怡园 松园 竹园 梅园 兰园 柳园 芙蓉 玉清 奎星 文昌 广文 东关 大虞 梨园 "
    "廿里堡 潍州 清池 东方 银座 世纪 泰华 中央 南关 北关 宝通 四平 新村 华都 金宝 金马 亚星 鑫城 安顺 永安 "
    "康乐 和谐 同心 惠民 安居 乐业 富华 长松 青年 锦华 宏图 嘉园 绿城 星河 春晖 晨光 朝阳 凤凰 丰华 润园 "
    "泰安 明珠 常青 仁和 光华 书香 龙泉 富康 馨苑 瑞园"
).split()
DEPARTMENTS = (
    "区委组织部 区委宣传部 区委政法委 区委统战部 区直机关工委 团区委 区妇联 区总工会 区科协 区残联 "
    "区红十字会 区教育和体育局 区卫生健康局 区民政局 区司法局 区人力资源和社会保障局 区住房和城乡建设局 "
    "区城市管理局 区市场监督管理局 区文化和旅游局 区应急管理局 区退役军人事务局 区医疗保障局 区生态环境分局 "
    "公安奎文分局 区消防救援大队 区税务局 区财政局 区发展和改革局 区商务局 区统计局 区审计局 区农业农村局 "
    "区水利局 区自然资源分局 区交通运输局 区行政审批服务局 区信访局 区档案馆 区图书馆 区文化馆 区融媒体中心 "
    "区人民医院 区中医院 区妇幼保健院 区疾病预防控制中心 区社会福利中心 区老年大学 区工商联 区侨联 区文联 "
    "区关工委 区慈善总会 区青年企业家协会 区律师协会 区个体劳动者协会 驻区高校联合 驻区金融机构联合 "
    "驻区供电单位 驻区通信企业 驻区燃气热力企业 驻区公交企业 区商场超市联合会 区物业服务行业协会 "
    "区餐饮行业协会 区出租车行业 区快递物流行业"
).split()
SCHOOLS = (
    "奎文区实验小学 北海学校 东风学校 孙家小学 新华中学 文华学校 樱园小学 金都小学 虞河小学 德润学校 "
    "日向友好学校 育英小学 青年路小学 胜利街小学 四平路小学 潍州路小学 梨园小学 廿里堡小学 清池小学 广文中学"
).split()
PROFESSIONAL = (
    "医疗救护 法律服务 心理咨询 文艺演出 应急救援 家电维修 助老助残 四点半学校 环境保护 交通文明 摄影宣传 "
    "理发义剪"
).split()
STATION_KINDS = ("党群服务中心志愿服务站", "邻里中心志愿服务站", "新时代文明实践站")
SITE_STATIONS = (
    "泰华城 万达广场 谷德广场 银座商城 中百大厦 佳乐家超市 奎文区图书馆 虞河湿地公园 白浪河湿地公园 "
    "人民广场东侧 植物园 潍坊火车站东广场"
).split()
PLAZA_SERVICES = ("理发", "义诊", "量血压", "家电维修", "法律咨询", "心理疏导", "磨刀", "测视力", "政策宣讲",
                  "四点半学校", "绿植换图书", "文艺演出")
OPENING = ("周六 9:00-11:30", "每周三、周六 8:30-11:00", "每月第一个周日 9:00-12:00",
           "工作日 14:00-17:00", "周二、周四 15:00-17:30")
STAR_HOURS = ((0, 15, 95), (1, 100, 290), (2, 300, 590), (3, 600, 990), (4, 1000, 1490), (5, 1500, 1800))


@dataclass
class Summary:
    counts: dict = field(default_factory=dict)
    logins: list = field(default_factory=list)  # (username, password, role, team name)
    personas: list = field(default_factory=list)  # (openid, role, name)

    def add(self, what: str, n: int) -> None:
        self.counts[what] = self.counts.get(what, 0) + n


def is_seeded(session: Session) -> bool:
    """Whether the database already holds a district (demo or real): then we keep it."""
    return session.scalar(select(Team.id).limit(1)) is not None


def seed(session: Session, *, now: datetime, pii_key: str, volunteers: int = 300,
         seed_value: int = SEED) -> Summary:
    """Write the whole demo district in `session` (the caller commits)."""
    rng = random.Random(seed_value)
    summary = Summary()
    communities = _communities(session, rng, summary)
    _catalog(session, summary)
    _teams(session, communities, summary)
    _places(session, rng, communities, now, summary)
    coordinators = _coordinators(session, rng, now, summary)
    _volunteers(session, rng, now, pii_key, communities, coordinators, volunteers, summary)
    from demo import schedule

    schedule.seed(session, rng, now, summary)
    _residents(session, rng, communities, now, summary)
    from demo import needs

    needs.seed(session, rng, now, summary)
    _notice_consents(session, now, summary)
    return summary


def _notice_consents(session: Session, now: datetime, summary: Summary) -> None:
    """Every demo follower accepted every subscribe notice once (as if they had tapped 允许
    on the notice page), so the tour's bus visit and order offer reach their chats; the demo
    supervisor tells the emulated WeChat the same (demo.supervisor.sync_consents)."""
    from sqlalchemy import insert

    from menus.notices import default_catalog
    from store.models import NoticeConsent

    templates = sorted({k.template_id for k in default_catalog().kinds.values() if k.channel == "subscribe"})
    openids = list(session.scalars(select(Follower.openid).order_by(Follower.id)))
    rows = [{"openid": o, "template_id": t, "state": "accepted", "grants": 1, "sent": 0, "source": "page",
             "granted_at": now, "first_granted_at": now, "updated_at": now} for o in openids for t in templates]
    for i in range(0, len(rows), 2000):
        session.execute(insert(NoticeConsent), rows[i:i + 2000])
    summary.add("followers with notice consent", len(openids))


# ---- district shape --------------------------------------------------------------------

def _communities(session: Session, rng: random.Random, summary: Summary) -> list[Community]:
    out = []
    per_street = len(COMMUNITY_WORDS) // len(geography.STREETS)
    for s, (street, lat, lng) in enumerate(geography.STREETS):
        for k in range(per_street):
            word = COMMUNITY_WORDS[s * per_street + k]
            clat, clng = geography.point_near(rng, lat, lng, spread=0.011)
            c = Community(code=f"{PREFIX}-C{len(out) + 1:03d}", name=f"{word}社区", street=street,
                          lat=clat, lng=clng, is_demo=True)
            session.add(c)
            out.append(c)
    session.flush()
    summary.add("communities", len(out))
    return out


def _catalog(session: Session, summary: Summary) -> None:
    """The district's 12/48 needs menu (menus/needs.yaml) as the menu in use."""
    from menus import catalog
    from rules import orders

    menu = catalog.load()
    orders.import_catalog(session, menu, source="demo: menus/needs.yaml")
    summary.add("needs categories", len(menu.categories))
    summary.add("needs sub-categories", sum(len(c.subs) for c in menu.categories))


def team_rows(communities: list[Community]) -> list[dict]:
    """The team tree as import rows (the same format a district's teams file has)."""
    rows = [{"code": f"{PREFIX}-B", "name": "奎文区志愿服务大队", "kind": "brigade"}]
    for s, (street, _, _) in enumerate(geography.STREETS):
        rows.append({"code": f"{PREFIX}-D{s + 1:02d}", "name": f"{street}志愿服务分队", "kind": "detachment",
                     "parent": f"{PREFIX}-B", "street": street})
    for d, dept in enumerate(DEPARTMENTS, start=len(geography.STREETS) + 1):
        rows.append({"code": f"{PREFIX}-D{d:02d}", "name": f"{dept}志愿服务分队", "kind": "detachment",
                     "parent": f"{PREFIX}-B"})
    street_code = {street: f"{PREFIX}-D{s + 1:02d}" for s, (street, _, _) in enumerate(geography.STREETS)}
    for i, c in enumerate(communities, 1):
        rows.append({"code": f"{PREFIX}-S{i:03d}", "name": f"{c.name}志愿服务小队", "kind": "squad",
                     "parent": street_code[c.street], "community": c.code, "street": c.street,
                     "join_policy": "approval" if i % 5 == 0 else "auto"})
    education = next(r["code"] for r in rows if r["name"].startswith("区教育和体育局"))
    for j, school in enumerate(SCHOOLS, len(communities) + 1):
        rows.append({"code": f"{PREFIX}-S{j:03d}", "name": f"{school}志愿服务小队", "kind": "squad",
                     "parent": education, "join_policy": "approval"})
    for p, name in enumerate(PROFESSIONAL, 1):
        rows.append({"code": f"{PREFIX}-P{p:02d}", "name": f"奎文区{name}志愿服务专业分队",
                     "kind": "professional", "parent": f"{PREFIX}-B"})
    return rows


def _teams(session: Session, communities: list[Community], summary: Summary) -> None:
    from rules import teams

    rows = team_rows(communities)
    teams.import_rows(session, rows)
    session.execute(update(Team).where(Team.code.like(f"{PREFIX}-%")).values(is_demo=True))
    for kind in ("brigade", "detachment", "squad", "professional"):
        summary.add(f"teams: {kind}", sum(1 for r in rows if r["kind"] == kind))


def nearest_community(communities: list[Community], lat: float, lng: float) -> Community:
    """The community whose centre is nearest (by the distance dispatch and the chat use)."""
    from rules.orders import distance_m

    return min(communities, key=lambda c: distance_m(lat, lng, c.lat, c.lng))


def _point_of(rng: random.Random, c: Community, communities: list[Community], spread: float) -> tuple[float, float]:
    """A point near `c` that is nearer to `c` than to any other community: a resident who
    sends the location of their community's station is then asked about that community
    first (nearest first), and an order placed there is dispatched to that community's
    squad. Communities are ~1 km apart, so a few draws are enough; `c` itself always is."""
    for _ in range(50):
        lat, lng = geography.point_near(rng, c.lat, c.lng, spread=spread)
        if nearest_community(communities, lat, lng) is c:
            return lat, lng
    return round(c.lat, 6), round(c.lng, 6)


def place_rows(rng: random.Random, communities: list[Community]) -> list[dict]:
    """13 plazas and 265 stations, each near its community (nearer to it than to any other),
    inside the outline."""
    rows = []
    for i, c in enumerate(communities[:: max(1, len(communities) // 13)][:13], 1):
        lat, lng = _point_of(rng, c, communities, spread=0.002)
        rows.append({"code": f"{PREFIX}-PL{i:02d}", "name": f"{c.name}星级志愿服务广场", "kind": "plaza",
                     "community": c.code, "address": f"潍坊市奎文区{c.street}{c.name}文化广场",
                     "lat": lat, "lng": lng, "opening_times": rng.choice(OPENING[:3]),
                     "services": rng.sample(PLAZA_SERVICES, 5), "star_rating": rng.choice((3, 4, 4, 5)),
                     "team": f"{PREFIX}-S{communities.index(c) + 1:03d}"})
    n = 0
    for k, c in enumerate(communities):
        for kind in STATION_KINDS:
            n += 1
            lat, lng = _point_of(rng, c, communities, spread=0.004)
            rows.append({"code": f"{PREFIX}-ST{n:03d}", "name": f"{c.name}{kind}", "kind": "station",
                         "community": c.code, "address": f"潍坊市奎文区{c.street}{c.name}",
                         "lat": lat, "lng": lng, "opening_times": rng.choice(OPENING),
                         "services": rng.sample(PLAZA_SERVICES, 3),
                         "team": f"{PREFIX}-S{k + 1:03d}"})
    for site in SITE_STATIONS:
        n += 1
        street, slat, slng = rng.choice(geography.STREETS)
        lat, lng = geography.point_near(rng, slat, slng, spread=0.008)
        rows.append({"code": f"{PREFIX}-ST{n:03d}", "name": f"{site}志愿服务站", "kind": "station",
                     "address": f"潍坊市奎文区{street}{site}", "lat": lat, "lng": lng,
                     "opening_times": rng.choice(OPENING), "services": rng.sample(PLAZA_SERVICES, 3)})
    return rows


def _places(session: Session, rng: random.Random, communities, now: datetime, summary: Summary) -> None:
    from rules import places
    from store.models.places import Place

    rows = place_rows(rng, communities)
    places.import_places(session, rows, now)
    session.execute(update(Place).where(Place.code.like(f"{PREFIX}-%")).values(is_demo=True))
    summary.add("plazas", sum(1 for r in rows if r["kind"] == "plaza"))
    summary.add("stations", sum(1 for r in rows if r["kind"] == "station"))


# ---- people ------------------------------------------------------------------------------

COORDINATORS = (  # username, role, team code, openid
    ("demo_brigade", "brigade", f"{PREFIX}-B", "o_demo_coord_1"),
    ("demo_street", "detachment", f"{PREFIX}-D01", "o_demo_coord_2"),
    ("demo_squad", "squad", f"{PREFIX}-S001", "o_demo_coord_3"),
)


def _follower(session: Session, openid: str, now: datetime, community_id: int | None = None,
              phone: str | None = None) -> Follower:
    f = Follower(openid=openid, subscribed=True, subscribed_at=now - timedelta(days=30),
                 community_id=community_id, phone=phone, created_at=now - timedelta(days=30))
    session.add(f)
    session.flush()
    return f


def _coordinators(session: Session, rng: random.Random, now: datetime, summary: Summary) -> dict[str, Coordinator]:
    from console import accounts

    out = {}
    for username, role, team_code, openid in COORDINATORS:
        person = names.name(rng)
        c = accounts.create_account(session, team_code=team_code, username=username, role=role,
                                    password=DEMO_PASSWORD, name=person)
        c.is_demo = True
        c.follower_id = _follower(session, openid, now).id
        out[username] = c
        summary.logins.append((username, DEMO_PASSWORD, role, c.team.name))
        summary.personas.append((openid, "coordinator", person))
    summary.add("coordinators", len(out))
    return out


def _quarter_spans(now: datetime, quarters: int):
    """(start, end) of each of the `quarters` whole local quarters before `now`, newest first."""
    local = now.astimezone(CHINA)
    y, q = local.year, (local.month - 1) // 3
    for _ in range(quarters):
        q -= 1
        if q < 0:
            y, q = y - 1, 3
        last_month = q * 3 + 3
        yield (datetime(y, q * 3 + 1, 1, 8, tzinfo=CHINA),
               datetime(y, last_month, calendar.monthrange(y, last_month)[1], 20, tzinfo=CHINA))


def _history(session: Session, volunteer: Volunteer, hours: int, now: datetime, by: Coordinator,
             rng: random.Random) -> list[int]:
    """Past service as quarterly totals (as a district imports its paper records), pending."""
    from rules import volunteering

    ids, left = [], hours
    for start, end in _quarter_spans(now, 40):
        if left <= 0:
            break
        quarter = min(left, rng.randint(100, 300))
        left -= quarter
        r = volunteering.record_hours(
            session, volunteer, source="manual", started_at=start, ended_at=end, now=now,
            minutes=quarter * 60, recorded_by=by, source_ref=f"{PREFIX}:hist:{volunteer.id}:{start:%Y%m}",
            description=f"{start:%Y年}第{(start.month - 1) // 3 + 1}季度累计志愿服务（历史补录，演示数据）")
        ids.append(r.id)
    return ids


def resident_community(communities: list, i: int):
    """The community demo resident `i` (1-based) lives in."""
    return communities[(i * 7) % len(communities)]


NEIGHBOUR = 1  # index of the volunteer who lives near resident 1 and can do anything asked
NEIGHBOUR_LEVEL = 2  # their star level (300-590 h): the tour's approval adds to a balance under the cap


def _volunteers(session: Session, rng: random.Random, now: datetime, pii_key: str, communities: list,
                coordinators: dict[str, Coordinator], count: int, summary: Summary) -> None:
    """Volunteers with past hours. The first one (o_demo_vol_001) serves in the squad whose
    leader takes the tour; the second (o_demo_vol_002) is resident 1's neighbour, in the
    squad of their community with every skill and time, so the tour's order goes to them."""
    from rules import volunteering

    rule = volunteering.rules()
    brigade = coordinators["demo_brigade"]
    squads = list(session.scalars(select(Team).where(Team.code.like(f"{PREFIX}-%"),
                                                     Team.kind.in_(("squad", "professional")))
                                  .order_by(Team.code)))
    tour_squad = next(t for t in squads if t.code == f"{PREFIX}-S001")
    home = resident_community(communities, 1)
    neighbour_squad = next(t for t in squads if t.community_id == home.id)
    today = now.astimezone(CHINA).date()
    skills_pool = [c.code for c in _catalog_categories()]  # volunteers' skills are categories
    availability = [a.code for a in rule.availability]
    stars = [0] * len(STAR_HOURS)
    # The first volunteers but the neighbour cover every star level (3 each); the rest are
    # mostly newer. The neighbour has a few hundred hours: far under the time bank's cap,
    # so the hours the tour approves visibly raise their balance.
    covering = [i for i in range(len(STAR_HOURS) * 3 + 1) if i != NEIGHBOUR]
    for i in range(count):
        if i == NEIGHBOUR:
            level = NEIGHBOUR_LEVEL
        elif i in covering:
            level = len(STAR_HOURS) - 1 - covering.index(i) // 3
        else:
            level = rng.choices(range(6), weights=(70, 12, 8, 5, 3, 2))[0]
        team = tour_squad if i % 12 == 0 else neighbour_squad if i == NEIGHBOUR else rng.choice(squads)
        skills, free = rng.sample(skills_pool, rng.randint(1, 3)), rng.sample(availability, 2)
        if i == NEIGHBOUR:
            skills, free = list(skills_pool), list(availability)
        v = volunteering.register(
            session, pii_key=pii_key, follower=None, name=names.name(rng), phone=names.mobile(rng),
            id_number=names.id_number(rng, today, min_age=20), team=team, now=now - timedelta(days=400),
            skills=skills, availability=free, rule=rule)
        v.state = "active"  # the history predates the account: every demo sign-up was approved
        v.is_demo = True
        _, low, high = STAR_HOURS[level]
        ids = _history(session, v, rng.randint(low, high), now, brigade, rng)
        if ids:
            # Approved by the operator who imports the history, not by its recorder.
            volunteering.decide_hours(session, ids, approve=True, now=now, coordinator=None,
                                      actor="operator:demo-history-import", rule=rule)
        stars[rule.star_for(volunteering.approved_minutes(session, v.id))] += 1
        # They follow the account after their history was imported (no star pushes for it).
        v.follower_id = _follower(session, f"o_demo_vol_{i + 1:03d}", now, team.community_id, v.phone).id
        if i < 3:
            summary.personas.append((f"o_demo_vol_{i + 1:03d}", "volunteer", v.name))
        if team is tour_squad:
            _pending_shift(session, v, now, brigade, i)
    summary.add("volunteers", count)
    for level, n in enumerate(stars):
        summary.add(f"volunteers at {level} stars", n)


def _pending_shift(session: Session, volunteer: Volunteer, now: datetime, by: Coordinator, i: int) -> None:
    """A recent service waiting for the squad leader's approval (the tour approves it)."""
    from rules import volunteering

    day = (now - timedelta(days=2 + i % 5)).astimezone(CHINA).replace(hour=9, minute=0, second=0, microsecond=0)
    volunteering.record_hours(session, volunteer, source="manual", started_at=day,
                              ended_at=day + timedelta(hours=3), now=now, recorded_by=by,
                              source_ref=f"{PREFIX}:recent:{volunteer.id}",
                              description="社区志愿服务站值守（演示数据，待审核）")


def _catalog_categories():
    from menus import catalog

    return catalog.load().categories


def _residents(session: Session, rng: random.Random, communities, now: datetime, summary: Summary) -> None:
    """Residents who follow the account, bound to a community and subscribed to its bus
    visits (after the visits were scheduled, so seeding pushes nothing)."""
    from rules import bus

    for i in range(1, 13):
        c = resident_community(communities, i)
        openid = f"o_demo_res_{i:03d}"
        bus.subscribe(session, _follower(session, openid, now, c.id), c, source="cli")
        if i <= 3:
            summary.personas.append((openid, "resident", f"{c.name}居民"))
    summary.add("residents following", 12)
