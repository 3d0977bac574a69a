"""The console's 需求库 pages over HTTP: a survey written, opened (invitations recorded),
answered and shown with counts, a chart and a CSV; unmet needs grouped by month and
community; the demand-and-supply report with a project linked; and who may revise the menu."""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import func, select

from rules import surveys, unmet
from store.models import AuditLog, Community, Follower, Push, Survey
from store.models.activities import Project
from tests.console_support import signed_in
from tests.seeds import apply


def _ids(svc):
    with svc.db.session() as s:
        return (s.scalar(select(Community.id).where(Community.code == "VT-C-DF")),
                s.scalar(select(Community.id).where(Community.code == "VT-C-BS")))


def test_a_survey_from_writing_to_results(base_url, svc):
    apply(svc, ["console_world"])
    df, bs = _ids(svc)
    with svc.db.transaction() as s:
        s.add_all([Follower(openid="o_nc_1", subscribed=True, community_id=df),
                   Follower(openid="o_nc_2", subscribed=True, community_id=df),
                   Follower(openid="o_nc_far", subscribed=True, community_id=bs)])
    b = signed_in(base_url, "df_lead")
    questions = "单选：家里有老人吗？| 有 | 没有\n文字：还有什么建议？"
    bad = b.post("/console/needs/surveys", {"title": "东风摸底", "questions": "文字：您的电话？", "audience": "community",
                                            "community_id": df})
    assert bad.status_code == 400 and "个人信息" in bad.text
    other = b.post("/console/needs/surveys", {"title": "越界", "questions": questions, "audience": "community",
                                              "community_id": bs})
    assert other.status_code == 400 and "不在您管理的范围内" in other.text
    r = b.post("/console/needs/surveys", {"title": "东风摸底", "intro": "一分钟", "questions": questions,
                                          "audience": "community", "community_id": df})
    assert r.status_code == 302
    with svc.db.session() as s:
        survey_id = s.scalar(select(Survey.id))
    assert b.post(f"/console/needs/surveys/{survey_id}/open").status_code == 302
    with svc.db.transaction() as s:
        invited = list(s.scalars(select(Push.openid).where(Push.kind == "survey_invite").order_by(Push.openid)))
        survey = s.get(Survey, survey_id)
        for openid, answer in (("o_nc_1", ["有", "多来理发 13812345678"]), ("o_nc_2", ["有", None])):
            surveys.submit(s, survey, s.scalar(select(Follower).where(Follower.openid == openid)), answer,
                           datetime.now(timezone.utc))
    assert invited == ["o_nc_1", "o_nc_2"]
    page = b.get(f"/console/needs/surveys/{survey_id}").text
    assert "2 人" in page and "<svg" in page and "13812345678" not in page and "多来理发 …" in page  # not kept
    csv = b.get(f"/console/needs/surveys/{survey_id}.csv")
    assert csv.status_code == 200 and "东风" in csv.content.decode("utf-8-sig") and "13812345678" not in csv.text
    # Another squad's lead cannot even see it.
    assert signed_in(base_url, "bs_lead").get(f"/console/needs/surveys/{survey_id}").status_code == 404


def test_unmet_needs_and_demand_beside_supply(base_url, svc):
    apply(svc, ["console_world"])
    df, bs = _ids(svc)
    now = datetime.now(timezone.utc)
    with svc.db.transaction() as s:
        for text, where in (("修自行车", df), ("自行车修理", df), ("配钥匙", bs)):
            unmet.record(s, kind="search", text=text, community_id=where, now=now)
        project_id = s.scalar(select(Project.id).where(Project.name == "DF四点半学校"))
    b = signed_in(base_url, "df_lead")
    page = b.get("/console/needs/unmet").text
    assert "自行车修理" in page and "修自行车" in page  # one group: its name and the other wording
    assert "配钥匙" not in page  # another subtree's community
    admin = signed_in(base_url, "admin")
    page = admin.get("/console/needs/unmet").text
    assert "配钥匙" in page and "东风" in page
    assert admin.post(f"/console/needs/projects/{project_id}", [("sub", "07-01"), ("sub", "07-02")]).status_code == 302
    report = admin.get("/console/needs/supply").text
    assert "<svg" in report and "四点半" in report
    csv = admin.get("/console/needs/supply.csv").content.decode("utf-8-sig")
    row = next(line for line in csv.splitlines() if line.startswith("水电维修"))
    assert row.split(",")[2] == "2"  # two orders of 08-01 in the world, one per subtree
    with svc.db.session() as s:
        assert s.scalar(select(func.count()).select_from(AuditLog).where(AuditLog.action == "project.needs")) == 1


def test_only_brigade_coordinators_revise_the_menu(base_url, svc):
    apply(svc, ["console_world"])
    squad = signed_in(base_url, "dg_lead")
    assert squad.get("/console/needs/menu").status_code == 200
    assert squad.post("/console/needs/menu/draft").status_code == 403
    admin = signed_in(base_url, "admin")
    assert admin.post("/console/needs/menu/draft").status_code == 302
    assert admin.post("/console/needs/menu/retire", {"code": "07-01"}).status_code == 302
    preview = admin.get("/console/needs/menu/preview").text
    assert "四点半学校" in preview and "请选择服务类别" in preview
    with svc.db.session() as s:
        actions = list(s.scalars(select(AuditLog.action).where(AuditLog.action.like("menu.%")).order_by(AuditLog.id)))
    assert actions == ["menu.draft", "menu.retire"]


