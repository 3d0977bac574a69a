"""The needs loop's rules on real SQL: grouping unmet needs, a menu revision published with
an order open on a retired item, a revision that waits for its date, surveys' rules (one
answer set per person, personal data only with a reason), and the demand-and-supply
report across versions."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest
from sqlalchemy import select

from rules import dispatch, menu_revisions, needs_report, surveys, unmet
from rules import orders as order_rules
from store.models import Community, Follower, HourRecord, Order, Team, UnmetNeed
from store.models.activities import Project
from tests.seeds.orders import place_order, resident
from tests.seeds.volunteers import add_volunteer, id_number

NOW = datetime(2026, 6, 10, 2, 0, tzinfo=timezone.utc)


def rows(*texts):
    return [SimpleNamespace(text=t, created_at=NOW, community_id=None) for t in texts]


def test_similar_wordings_fall_into_one_group_and_others_do_not():
    groups = unmet.group(rows("修自行车", "自行车修理", "帮忙修一下自行车", "我想修自行车！", "配钥匙", "配把钥匙",
                              "宠物寄养", "自行车修理"))
    found = {g.label: g.count for g in groups}
    assert found == {"自行车修理": 5, "配钥匙": 2, "宠物寄养": 1}
    assert groups[0].label == "自行车修理"  # biggest first
    # The same input gives the same groups whatever its order.
    again = unmet.group(list(reversed(rows("修自行车", "自行车修理", "帮忙修一下自行车", "我想修自行车！", "配钥匙",
                                           "配把钥匙", "宠物寄养", "自行车修理"))))
    assert [(g.label, g.count) for g in again] == [(g.label, g.count) for g in groups]


def test_unmet_needs_keep_no_phone_and_no_empty_words(svc):
    with svc.db.transaction() as s:
        assert unmet.record(s, kind="search", text="修电动车 电话13812345678", now=NOW) is not None
        assert unmet.record(s, kind="search", text="！！", now=NOW) is None
        with pytest.raises(ValueError):
            unmet.record(s, kind="gossip", text="修电动车", now=NOW)
    with svc.db.session() as s:
        assert list(s.scalars(select(UnmetNeed.text))) == ["修电动车 电话…"]
        assert not hasattr(UnmetNeed, "follower_id")


def test_a_revision_retires_an_item_while_an_order_is_open_on_it(svc):
    with svc.db.transaction() as s:
        res = resident(s, "o_rev_res")
        order = place_order(s, res, sub_code="08-01", now=NOW)
        draft = menu_revisions.start_draft(s, author_id=None, now=NOW)
        menu_revisions.retire_sub(draft, "08-01", NOW)
        menu_revisions.rename_sub(draft, "08-02", name="家电上门修", description=None, now=NOW)
        code = menu_revisions.add_sub(s, draft, category_code="08", name="自行车维修", description="自行车、电动车简单修理",
                                      keywords=["自行车", "电动车"], mode="onsite", minutes=45, now=NOW)
        assert code not in {sub.code for sub in order_rules.catalog_at(s, NOW).subs}
        changes = menu_revisions.changes(s, draft, NOW)
        assert [c for c, _ in changes.retired] == ["08-01"] and changes.added == [(code, "自行车维修")]
        version = menu_revisions.publish(s, draft, effective_from=None, coordinator_id=None, now=NOW)
        assert version.effective_from is None
        order_id = order.id
    with svc.db.transaction() as s:
        menu = order_rules.catalog_at(s, NOW + timedelta(seconds=1))
        assert menu.sub("08-01") is None and menu.sub(code).name == "自行车维修"
        renamed = menu.sub("08-02")
        assert renamed.name == "家电上门修" and "家电维修" in renamed.keywords  # the old name still finds it
        order = s.get(Order, order_id)
        # The open order keeps the item it was made for and can still be dispatched.
        assert (order.sub_code, order.status) == ("08-01", "submitted")
        assert order.sub_name == "水电维修"
        dispatch.offer_next(s, order, NOW + timedelta(minutes=1), escalate=True)
        assert order.status == "escalated"  # nobody has the skill here: escalated, and kept as unmet
        assert s.scalar(select(UnmetNeed.sub_code).where(UnmetNeed.kind == "no_volunteer")) == "08-01"
        # A retired code is never handed out again.
        draft2 = menu_revisions.start_draft(s, author_id=None, now=NOW)
        again = menu_revisions.add_sub(s, draft2, category_code="08", name="上门修锁", description="开锁换锁",
                                       keywords=["锁"], mode="onsite", minutes=30, now=NOW)
        assert again not in ("08-01", code)
        names = menu_revisions.sub_names(s)
        assert names["08-01"] == ("水电维修", "便民维修") and names[code] == ("自行车维修", "便民维修")


def test_a_revision_published_for_a_date_takes_effect_that_day(svc):
    later = NOW + timedelta(days=5)
    with svc.db.transaction() as s:
        draft = menu_revisions.start_draft(s, author_id=None, now=NOW)
        menu_revisions.rename_sub(draft, "01-01", name="文艺汇演", description=None, now=NOW)
        menu_revisions.publish(s, draft, effective_from=later, coordinator_id=None, now=NOW)
        with pytest.raises(menu_revisions.RevisionError):
            menu_revisions.publish(s, menu_revisions.start_draft(s, author_id=None, now=NOW),
                                   effective_from=None, coordinator_id=None, now=NOW)
    with svc.db.session() as s:
        assert order_rules.catalog_at(s, NOW).sub("01-01").name == "文艺演出"
        assert order_rules.catalog_at(s, later).sub("01-01").name == "文艺汇演"


def _world(s):
    c = Community(code="NT-YY", name="樱园社区")
    s.add(c)
    s.flush()
    brigade = Team(code="NT-KW", name="区大队", kind="brigade", path="/")
    s.add(brigade)
    s.flush()
    brigade.path = f"/{brigade.id}/"
    squad = Team(code="NT-YYS", name="樱园小队", kind="squad", parent_id=brigade.id, path="/", community_id=c.id)
    s.add(squad)
    s.flush()
    squad.path = f"{brigade.path}{squad.id}/"
    return c, brigade, squad


def test_surveys_keep_one_answer_set_and_ask_personal_data_only_with_a_reason(svc):
    with svc.db.transaction() as s:
        c, brigade, squad = _world(s)
        with pytest.raises(surveys.SurveyError) as e:
            surveys.create(s, team_id=brigade.id, coordinator_id=None, title="摸底", intro="", personal_reason="",
                           questions_text="文字：您的手机号码？", audience="all", now=NOW)
        assert "个人信息" in e.value.problems[0]
        with pytest.raises(surveys.SurveyError):
            surveys.parse_questions("单选：只有一个选项？| 是")
        survey = surveys.create(s, team_id=brigade.id, coordinator_id=None, title="摸底", intro="", personal_reason="",
                                questions_text="多选：最需要？| 助餐 | 理发\n数字：几位老人？| 0-9", audience="team",
                                area_team_id=squad.id, now=NOW)
        inside = Follower(openid="o_in", subscribed=True, community_id=c.id)
        outside = Follower(openid="o_out", subscribed=True)
        s.add_all([inside, outside])
        s.flush()
        assert surveys.open_and_invite(s, survey, NOW) == 1
        assert surveys.open_and_invite(s, survey, NOW) == 0  # nobody invited twice
        assert surveys.open_for(s, inside) == [survey] and surveys.open_for(s, outside) == []
        assert surveys.submit(s, survey, inside, [["助餐", "理发"], 2], NOW)
        assert not surveys.submit(s, survey, inside, [["理发"], 5], NOW)
        total, results = surveys.results(s, survey)
        assert total == 1 and results[0].counts == [("助餐", 1), ("理发", 1)] and results[1].stats["mean"] == 2
        assert surveys.mask_digits("电话13812345678") == "电话13*******78"  # shown so where a survey asks it
        columns, export = surveys.export_rows(s, survey)
        assert export[0][1:] == ["樱园社区", "助餐、理发", 2]


def test_demand_beside_supply_spans_versions(svc):
    with svc.db.transaction() as s:
        c, brigade, squad = _world(s)
        res = resident(s, "o_sup_res")
        made = [place_order(s, res, sub_code="08-01", now=NOW) for _ in range(3)]
        for order in made:
            order.community_id = c.id
        vol = add_volunteer(s, None, "维修甲", "KW2026009001", "NT-YYS", id_number(order="901"))
        vol.skills = ["08"]
        for ref, minutes in ((f"order:{made[0].number}", 90), (f"order:{made[0].number}:approved", 30)):
            s.add(HourRecord(volunteer_id=vol.id, source="order", source_ref=ref, minutes=minutes, state="approved",
                             started_at=NOW, ended_at=NOW + timedelta(minutes=minutes)))
        unmet.record(s, kind="no_volunteer", text="水电维修", sub_code="08-01", community_id=c.id, now=NOW)
        project = Project(name="家电义修", team_id=squad.id)
        s.add(project)
        s.flush()
        needs_report.link_project(s, project, ["08-01", "99-99"])
        assert needs_report.links(s, [project.id]) == {project.id: ["08-01"]}
        draft = menu_revisions.start_draft(s, author_id=None, now=NOW)
        menu_revisions.retire_sub(draft, "08-01", NOW)
        menu_revisions.publish(s, draft, effective_from=None, coordinator_id=None, now=NOW)
        order_rules.forget_catalog_in_use()
        admin = SimpleNamespace(is_district=True, team_ids=(brigade.id, squad.id), community_ids=(c.id,))
        table = needs_report.report(s, admin, NOW.year)
    row = next(r for r in table.rows if r[0].startswith("水电维修"))
    assert row[0].endswith("（已下架）")
    assert row[2:6] == [3, 1, 0, 4] and row[6:9] == [1, 1, 2.0]  # 90 + 30 minutes served


