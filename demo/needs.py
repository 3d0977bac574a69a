"""The demo district's year of the needs loop (需求库): last year's survey of residents,
what residents asked for that the menu did not offer, and the projects linked to the
sub-categories they serve — so the console's 需求库 reports have a year to show.

Written through the rules (`rules.surveys`, `rules.unmet`, `rules.needs_report`) like the
rest of the demo. The survey is closed and was never pushed (seeding sends nothing); its
answers come from the demo followers. Wordings residents typed are a fixed list with the
variants real people use, spread over the past twelve months and the communities.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from store.models import Community, Follower, Team

SURVEY_TITLE = "居民志愿服务需求摸底"
SURVEY = """多选：您家最需要哪些志愿服务？| 助餐送餐 | 理发 | 陪同就医 | 家电维修 | 作业辅导 | 法律咨询 | 心理疏导 | 健康体检
单选：您家里有几位60岁以上的老人？| 没有 | 1位 | 2位及以上
数字：您每周愿意参加几小时志愿服务？| 0-20
文字：您还希望社区提供什么服务？"""
OPTIONS = ("助餐送餐", "理发", "陪同就医", "家电维修", "作业辅导", "法律咨询", "心理疏导", "健康体检")
WEIGHTS = (9, 7, 8, 6, 7, 3, 2, 8)
SUGGESTIONS = ("希望有人帮忙修自行车", "能不能组织老年人学用智能手机", "楼道灯坏了没人修", "希望周末有四点半学校", "")
# What residents asked for and did not find: (wordings, how often in the year).
ASKED = (
    (("修自行车", "自行车修理", "帮忙修一下自行车", "自行车补胎"), 46),
    (("配钥匙", "配把钥匙", "配一把钥匙"), 21),
    (("宠物寄养", "宠物寄养几天", "宠物需要寄养"), 17),
    (("接孩子放学", "放学接孩子", "帮忙接孩子放学"), 29),
    (("代缴水电费", "帮忙交水电费", "交水电费"), 12),
    (("取药", "帮忙取药", "去医院取药"), 15),
)
PROJECT_LINKS = 120  # of the 150 demo projects: the rest are unlinked, as a district's would be at first


def seed(session: Session, rng: random.Random, now: datetime, summary) -> None:
    from rules import unmet

    communities = list(session.scalars(select(Community).where(Community.code.like("DEMO-%")).order_by(Community.id)))
    _survey(session, rng, now, summary)
    n = 0
    for wordings, times in ASKED:
        for _ in range(times):
            when = now - timedelta(days=rng.randint(1, 364), minutes=rng.randint(0, 600))
            unmet.record(session, kind=rng.choice(("search", "search", "other")), text=rng.choice(wordings),
                         community_id=rng.choice(communities).id, now=when)
            n += 1
    summary.add("unmet needs recorded (past year)", n)
    _links(session, summary)


def _survey(session: Session, rng: random.Random, now: datetime, summary) -> None:
    from rules import surveys

    brigade = session.scalar(select(Team).where(Team.code == "DEMO-B"))
    opened = now - timedelta(days=300)
    survey = surveys.create(session, team_id=brigade.id, coordinator_id=None, title=SURVEY_TITLE,
                            intro="为调整社区志愿服务项目，请花1分钟回答4个问题。", personal_reason="",
                            questions_text=SURVEY, audience="all", now=opened)
    survey.state, survey.opened_at, survey.closed_at = "closed", opened, opened + timedelta(days=30)
    followers = list(session.scalars(select(Follower).where(Follower.openid.like("o_demo_%")).order_by(Follower.id)))
    answered = 0
    for f in followers:
        if rng.random() < 0.4:
            continue
        picks = sorted(set(rng.choices(OPTIONS, weights=WEIGHTS, k=rng.randint(1, 3))), key=OPTIONS.index)
        answers = [picks, rng.choice(("没有", "1位", "2位及以上")), rng.randint(0, 8), rng.choice(SUGGESTIONS) or None]
        surveys.submit(session, survey, f, answers, opened + timedelta(days=rng.randint(0, 29), minutes=rng.randint(0, 900)))
        answered += 1
    summary.add("survey answers (last year)", answered)


def _links(session: Session, summary) -> None:
    """Each project linked to the sub-categories its theme and description point to, found
    by the menu's own search."""
    from rules import needs, needs_report
    from rules import orders as order_rules
    from store.models.activities import Project

    menu = order_rules.current_catalog(session)
    projects = list(session.scalars(select(Project).where(Project.is_demo.is_(True)).order_by(Project.id)))
    linked = 0
    for p in projects[:PROJECT_LINKS]:
        hits = needs.search(menu, p.name.split("·")[0] + p.description, limit=2)
        if hits:
            needs_report.link_project(session, p, [h.sub.code for h in hits])
            linked += 1
    summary.add("projects linked to sub-categories", linked)
