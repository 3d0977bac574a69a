"""Needs-loop set-ups: an open survey for one community and a resident living there.

Community codes start with NS- so they cannot clash with other domains' seeds.
"""

from __future__ import annotations

from datetime import datetime, timezone

from rules import surveys
from store.models import Community, Follower, Team
from tests.seeds import seed

QUESTIONS = """单选：您家里有几位60岁以上的老人？| 没有 | 1位 | 2位及以上
多选：您最需要哪些上门服务？| 助餐 | 理发 | 陪诊 | 修家电
数字：您每周能参加几小时志愿服务？| 0-40
文字：您还有什么建议？"""


@seed
def needs_survey(session):
    now = datetime(2026, 5, 1, 2, 0, tzinfo=timezone.utc)
    community = Community(code="NS-YY", name="樱园社区", street="广文街道")
    other = Community(code="NS-JD", name="金都社区", street="广文街道")
    session.add_all([community, other])
    session.flush()
    brigade = Team(code="NS-KW", name="区大队", kind="brigade", path="/")
    session.add(brigade)
    session.flush()
    brigade.path = f"/{brigade.id}/"
    session.add(Follower(openid="o_survey_res", subscribed=True, community_id=community.id))
    session.add(Follower(openid="o_survey_far", subscribed=True, community_id=other.id))
    survey = surveys.create(session, team_id=brigade.id, coordinator_id=None, title="樱园社区服务需求摸底",
                            intro="了解大家最需要的志愿服务，约1分钟。", personal_reason="",
                            questions_text=QUESTIONS, audience="community", community_id=community.id, now=now)
    surveys.open_and_invite(session, survey, now)


@seed
def needs_two_surveys(session):
    """The community survey and a second one for every follower."""
    needs_survey(session)
    brigade = session.query(Team).filter_by(code="NS-KW").one()
    survey = surveys.create(session, team_id=brigade.id, coordinator_id=None, title="全区志愿服务满意度",
                            intro="", personal_reason="", questions_text="单选：您对志愿服务满意吗？| 满意 | 一般 | 不满意",
                            audience="all", now=datetime(2026, 5, 2, 2, 0, tzinfo=timezone.utc))
    surveys.open_and_invite(session, survey, datetime(2026, 5, 2, 2, 0, tzinfo=timezone.utc))
