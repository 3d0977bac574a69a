"""The demo district's calendar: 150 volunteer projects with upcoming activities and shifts
(through `rules.activities.add_activity`), and the Volunteer Bus route with the next weeks'
visits (through the bus domain's scheduling functions when that domain is installed).
"""

from __future__ import annotations

import random
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from store.models import Team

CHINA = ZoneInfo("Asia/Shanghai")
PREFIX = "DEMO"
PROJECTS = 150
PROJECT_THEMES = (
    ("志愿巴士进社区", "志愿巴士开进社区，提供招募、查体、义卖、图书、律师咨询等便民服务"),
    ("奎星微志愿", "身边的小事马上办：楼道清理、代买代办、陪伴聊天"),
    ("争当小雷锋", "中小学生走进社区参加力所能及的志愿服务"),
    ("四进社区", "文化、科技、卫生、法律进社区"),
    ("绿植换图书", "居民用绿植交换图书，共建社区书屋"),
    ("蓝丝带爱心助艺考", "艺考季为考生和家长提供指引、休息和饮水服务"),
    ("文艺志愿服务周", "文艺团队进社区、进养老院演出"),
    ("四点半学校", "放学后为孩子提供课业辅导和看护"),
    ("银龄互助", "低龄老人结对帮扶高龄、独居老人"),
    ("邻里守望", "楼栋志愿者关注独居老人、残疾人日常"),
    ("爱心义剪", "为老人、残疾人免费理发"),
    ("家电义修", "小家电、电动车免费检修"),
    ("法律进社区", "律师志愿者解答婚姻家庭、劳动、物业纠纷"),
    ("健康义诊", "测血压血糖、健康咨询、用药指导"),
    ("文明交通劝导", "路口文明交通劝导和护学岗"),
    ("垃圾分类宣传", "入户宣传和现场指导垃圾分类"),
    ("关爱留守儿童", "陪伴学习、心理关爱和亲情连线"),
    ("助残陪伴", "陪同就医、康复训练和出行帮助"),
)
SHIFT_PATTERNS = (
    (((9, 0), (11, 30), "上午场"),),
    (((8, 30), (10, 30), "第一班"), ((10, 30), (12, 0), "第二班")),
    (((14, 30), (17, 0), "下午场"),),
    (((15, 30), (17, 30), "课后辅导"),),
)


def seed(session: Session, rng: random.Random, now: datetime, summary) -> None:
    _projects(session, rng, now, summary)
    _bus(session, rng, now, summary)


def _projects(session: Session, rng: random.Random, now: datetime, summary) -> None:
    from rules import activities
    from store.models.activities import Project
    from store.models.places import Place

    owners = list(session.scalars(select(Team).where(Team.code.like(f"{PREFIX}-%"), Team.kind != "brigade")
                                  .order_by(Team.code)))
    places = list(session.scalars(select(Place).where(Place.code.like(f"{PREFIX}-%")).order_by(Place.code)))
    by_community: dict[int, list] = {}
    for p in places:
        by_community.setdefault(p.community_id, []).append(p)
    today = now.astimezone(CHINA).date()
    n_activities = n_shifts = 0
    for i in range(PROJECTS):
        theme, description = PROJECT_THEMES[i % len(PROJECT_THEMES)]
        team = owners[(i * 7) % len(owners)]
        project = Project(name=f"{theme}·{team.name.replace('志愿服务', '')}", team_id=team.id,
                          description=description, is_demo=True, created_at=now - timedelta(days=90))
        session.add(project)
        session.flush()
        near = by_community.get(team.community_id) or places
        for k in range(1 + i % 2):
            day = today + timedelta(days=1 + (i * 3 + k * 5) % 21)
            pattern = SHIFT_PATTERNS[(i + k) % len(SHIFT_PATTERNS)]
            shifts = [(datetime(day.year, day.month, day.day, *a, tzinfo=CHINA),
                       datetime(day.year, day.month, day.day, *b, tzinfo=CHINA), name) for a, b, name in pattern]
            place = rng.choice(near)
            activity = activities.add_activity(
                session, project=project, title=f"{theme}（{place.name}）", shifts=shifts,
                capacity=rng.choice((5, 8, 10, 15, 20)), place=place, description=description, now=now)
            activity.is_demo = True
            n_activities += 1
            n_shifts += len(shifts)
    summary.add("projects", PROJECTS)
    summary.add("activities (upcoming)", n_activities)
    summary.add("shifts", n_shifts)


BUS_ROUTES = (("DEMO-BUS-E", "志愿巴士进社区·东线", (1, 3, 5)), ("DEMO-BUS-W", "志愿巴士进社区·西线", (2, 4, 6)))
BUS_WEEKS = 4


def _bus(session: Session, rng: random.Random, now: datetime, summary) -> None:
    """Two routes, three visits a week each for the next weeks, through `rules.bus.schedule`.
    Residents subscribe to their community afterwards (see `district._residents`), so the
    seeding itself pushes nothing; the tour's new visit is the first push they get."""
    from rules import bus
    from store.models import Community

    services = [s.code for s in bus.services_catalog()]
    communities = list(session.scalars(select(Community).where(Community.code.like(f"{PREFIX}-%"))
                                       .order_by(Community.code)))
    east = [c for c in communities if c.lng >= 119.145]
    west = [c for c in communities if c.lng < 119.145]
    today = now.astimezone(CHINA).date()
    visits = 0
    for (code, name, weekdays), stops in zip(BUS_ROUTES, (east, west)):
        route = bus.route_by_code(session, code)
        route.name = name
        for week in range(BUS_WEEKS):
            for wd in weekdays:
                first = today + timedelta(days=1)
                day = first + timedelta(days=(wd - first.isoweekday()) % 7 + 7 * week)
                community = stops[(visits * 5) % len(stops)]
                start, end = bus.local_span(day, time(9, 0), time(11, 30))
                bus.schedule(session, community=community, starts_at=start, ends_at=end,
                             place=f"{community.name}文化广场", services=rng.sample(services, 5), now=now,
                             route=route, created_by="demo")
                visits += 1
    summary.add("bus routes", len(BUS_ROUTES))
    summary.add("bus visits (next weeks)", visits)
