"""Announcements (政府信息推送): written to an audience within the author's subtree, previewed
as the phone shows it, approved a level up, sent as notices to those who consented and as
a mass send by tag within the month's quota — through the console and the real worker."""

from __future__ import annotations

import pytest
import requests
from sqlalchemy import func, select

from pushes.scheduler import run_pass
from rules import access, notices
from rules import announcements as rules
from store.models import Announcement, Push
from tests.console_support import signed_in
from tests.pushes_fixtures import drain
from tests.seeds import apply
from tests.seeds.console import coordinator


def scope(s, username):
    return access.scope_for(s, coordinator(s, username))


def test_audiences_approval_and_the_monthly_mass_send_quota(svc):
    apply(svc, ["console_world"])
    now = svc.clock.now()
    with svc.db.transaction() as s:
        df = scope(s, "df_lead")
        with pytest.raises(rules.AnnouncementError, match="下级队伍"):
            rules.draft(s, df, subject="通知", body="内容", audience="team", audience_ref="VT-BS", now=now)
        with pytest.raises(rules.AnnouncementError, match="20字"):
            rules.draft(s, df, subject="长" * 21, body="内容", audience="subtree", now=now)
        a = rules.draft(s, df, subject="寒潮防范提示", body="本周末有寒潮，请减少外出。", audience="skill",
                        audience_ref="05", now=now)
        assert rules.audience_openids(s, a) == ["o_DF_vol"]  # only 东风's volunteer with skill 05
        team = rules.draft(s, df, subject="例会", body="周五例会", audience="team", audience_ref="VT-DF", now=now)
        assert rules.audience_openids(s, team) == ["o_DF_vol", "o_DF_vol2"]
        view = rules.preview(s, a, notices.catalog_for(None))
        assert view["notice"][0] == "政务信息通知" and view["notice"][1] == "通知事项：寒潮防范提示"
        assert (view["audience"], view["consenting"]) == (1, 0)
        rules.submit(s, a, approval="parent", monthly=4, now=now)
        assert a.state == "submitted"
        with pytest.raises(rules.AnnouncementError, match="上一级"):
            rules.decide(s, a, scope(s, "df_second"), approve=True, monthly=4, now=now)  # same level
        with pytest.raises(rules.AnnouncementError, match="上一级"):
            rules.decide(s, a, scope(s, "by_lead"), approve=True, monthly=4, now=now)  # another branch
        rules.decide(s, a, scope(s, "dg_lead"), approve=False, note="请补充求助电话", monthly=4, now=now)
        assert (a.state, a.decision_note) == ("rejected", "请补充求助电话")
        # Mass sends: the month's quota is counted at approval; the fifth is refused.
        dg = scope(s, "dg_lead")
        for i in range(5):
            m = rules.draft(s, df, subject=f"群发{i}", body="内容", audience="subtree", mass_send=True, now=now)
            rules.submit(s, m, approval="parent", monthly=4, now=now)
            if i < 4:
                rules.decide(s, m, dg, approve=True, monthly=4, now=now)
                assert (m.state, m.mass_state) == ("sent", "queued")
            else:
                with pytest.raises(rules.AnnouncementError, match="本月群发次数已用完"):
                    rules.decide(s, m, dg, approve=True, monthly=4, now=now)
        assert rules.mass_sends_this_month(s, now) == 4


def test_an_announcement_through_the_console_and_the_worker(base_url, svc, dispatcher, emulator):
    apply(svc, ["console_world"])
    with svc.db.transaction() as s:  # 东风's first volunteer consented to announcements, the second did not
        notices.record_consent(s, "o_DF_vol", "volbot-announcement", accepted=True, source="page", now=svc.clock.now())
    emulator.admin("notice-consent", openid="o_DF_vol", template_id="volbot-announcement", accept=True)
    author = signed_in(base_url, "df_lead")
    r = author.post("/console/announcements", {"subject": "寒潮防范提示", "body": "本周末有寒潮，请老人减少外出。",
                                               "audience": "team", "team": "VT-DF", "mass_send": "1"})
    assert r.status_code == 302
    with svc.db.session() as s:
        a = s.scalar(select(Announcement))
    page = author.get(f"/console/announcements/{a.id}").text
    assert "手机上看到的样子" in page and "通知事项：寒潮防范提示" in page and "其中 1 人订阅" in page
    assert author.post(f"/console/announcements/{a.id}/decide", {"decision": "approve"}).status_code == 302
    with svc.db.session() as s:
        assert s.get(Announcement, a.id).state == "draft"  # nobody decides their own
    author.post(f"/console/announcements/{a.id}/submit", {})
    lead = signed_in(base_url, "dg_lead")
    assert "寒潮防范提示" in lead.get("/console/announcements").text  # waiting for them
    lead.post(f"/console/announcements/{a.id}/decide", {"decision": "approve"})
    with svc.db.session() as s:
        a = s.get(Announcement, a.id)
        assert (a.state, a.recipients, a.skipped) == ("sent", 1, 1)
    run_pass(svc)
    drain(svc)
    progress = lead.get(f"/console/announcements/{a.id}/progress.json").json()
    assert progress["finished"] and progress["states"] == {"sent": 1}
    sent = requests.get(emulator.url + "/_emulator/notices", timeout=5).json()
    assert [n["openid"] for n in sent] == ["o_DF_vol"] and sent[0]["data"]["thing1"] == {"value": "寒潮防范提示"}
    mass = requests.get(emulator.url + "/_emulator/mass", timeout=5).json()
    assert [(m["sent"], m["content"].startswith("【寒潮防范提示】")) for m in mass["sends"]] == [(2, True)]
    assert mass["tags"] == {}  # the tag was removed after the send
    with svc.db.session() as s:
        assert s.get(Announcement, a.id).mass_state == "sent"
        assert s.scalar(select(func.count()).select_from(Push).where(Push.kind == "announcement_mass")) == 1
    # The push page shows it as the coordinators read it.
    assert "发送进度" in lead.get(f"/console/announcements/{a.id}").text
