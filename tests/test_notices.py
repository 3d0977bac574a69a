"""Notices WeChat's rules allow: each kind's channel as data (menus/templates.yaml), the one
function that fits values to WeChat's field rules, consent for subscribe notices, and every
kind through its channel against the emulator — refusal, ban, review, an expired window."""

from __future__ import annotations

import pytest
import requests
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from emulator.notices import RULES, field_error
from menus.notices import CatalogError, FitError, default_catalog, field_type, fit, from_dict
from pushes.scheduler import run_pass
from rules import notices
from store.models import Follower, NoticeConsent, PausedKind, Push
from store.outbox import notify
from tests.pushes_fixtures import drain

# Values a producer gives each push field (rules/*.py), to render every kind.
SAMPLES = {"community": "幸福里社区", "time": "12月07日 周六 09:00-11:00", "place": "社区文化广场东侧停车场",
           "services": "理发、量血压、家电维修、法律咨询", "change": "时间有变：改到下午", "reason": "天气原因",
           "number": "KW2026000042", "result": "已通过", "level": "2星", "hours": "20.5小时", "note": "谢谢参与",
           "team": "东风小队", "hint": "回复“待审志愿者”处理", "订单号": "KW-20261207-0001", "服务项目": "上门理发",
           "状态": "已接单", "时间": "2026年12月07日 09:30", "备注": "", "活动": "绿植换图书（下午场）",
           "地点": "东风社区服务中心", "说明": "明天开始，请准时到场扫码签到", "subject": "寒潮防范提示",
           "sender": "区志愿者大队", "summary": "本周末有寒潮，请老人减少外出，需要帮助请回复留言。",
           "text": "【工作人员回复】已收到", "announcement": "1", "survey": "2027年社区需求摸底", "事项": "家人赠与",
           "时长": "1.5小时", "余额": "12小时"}


# ---- the catalog --------------------------------------------------------------------------------

def test_every_kind_has_a_channel_and_no_broadcast_is_a_template():
    catalog = default_catalog()
    assert {"bus_visit", "order_update", "inbox_answer", "announcement", "announcement_mass"} <= set(catalog.kinds)
    for kind in catalog.kinds.values():
        assert kind.channel in ("template", "subscribe", "customer_service", "mass_send")
        assert not (kind.audience == "broadcast" and kind.channel == "template"), kind.name
        assert not {"first", "remark"} & {f.key for f in kind.fields}, kind.name
        if kind.channel in ("template", "subscribe"):
            assert kind.title and kind.template_id and kind.fields
            kind.render(SAMPLES)  # every field fits its type
    for name in ("bus_visit", "bus_change", "bus_cancel", "bus_reminder", "shift_reminder", "announcement"):
        assert catalog.channel(name) == "subscribe"
    for name in ("order_update", "hours_result", "volunteer_decision", "shift_promoted"):
        assert catalog.channel(name) == "template"


@pytest.mark.parametrize("spec, problem", [
    ({"title": "t", "template_id": "x", "fields": {"thing1": ["a", "A"]}}, "channel must be one of"),
    ({"channel": "template", "audience": "broadcast", "title": "t", "template_id": "x",
      "fields": {"thing1": ["a", "A"]}}, "broadcast may not go as a template"),
    ({"channel": "template", "title": "t", "template_id": "x", "fields": {"first": ["title", "标题"]}}, "first"),
    ({"channel": "subscribe", "title": "t", "template_id": "x", "fields": {"thing1": ["a", "A"]}}, "consent"),
    ({"channel": "template", "title": "t", "template_id": "x", "fields": {"colour1": ["a", "A"]}}, "field type"),
])
def test_a_kind_without_a_channel_or_against_the_rules_is_refused(spec, problem):
    with pytest.raises(CatalogError, match=problem):
        from_dict({"kinds": {"call_out": spec}})


def test_adding_a_kind_is_one_entry_and_an_undeclared_kind_is_not_recorded(svc):
    catalog = from_dict({"kinds": {"call_out": {
        "channel": "subscribe", "audience": "broadcast", "consent": "long_term", "title": "志愿服务召集通知",
        "template_id": "volbot-call-out", "fields": {"thing1": ["活动", "活动名称"], "time2": ["时间", "集合时间"]}}}})
    assert catalog.kind("call_out").preview({"活动": "防汛值守", "时间": "12月8日 07:30"}) == [
        "志愿服务召集通知", "活动名称：防汛值守", "集合时间：12月8日 07:30"]
    with svc.db.transaction() as s, pytest.raises(KeyError, match="not declared"):
        notify(s, openid="o_notice_x", kind="no_such_kind", title="t", fields={}, dedup_key="x")


# ---- fitting values to WeChat's field rules -------------------------------------------------------

def test_fit_examples():
    assert fit("thing1", "一二三四五六七八九十" * 3) == "一二三四五六七八九十一二三四五六七八九…"
    assert fit("thing3", "") == "无" and fit("thing3", "a\nb\x00c") == "a b c"
    assert fit("time2", "12月07日 周六 09:00-11:00") == "12月7日 09:00~11:00"
    assert fit("time4", "2026年12月07日 09:30") == "2026年12月7日 09:30"
    assert fit("date1", "2026-12-07") == "2026年12月7日"
    assert fit("phrase3", "已接单了吗") == "已接单了吗" and fit("phrase2", "已通过(OK)") == "已通过"
    assert fit("character_string1", "KW-2026 甲") == "KW-2026"
    assert fit("number1", "20.5小时") == "20.5" and fit("amount1", "共1,200元") == "1200元"
    assert fit("phone_number1", "电话 0766-66888866") == "0766-66888866"
    assert fit("name1", "欧阳 娜娜") == "欧阳娜娜"
    for key, value in (("phrase1", "OK"), ("time1", "明天上午"), ("character_string1", "甲乙"), ("number1", "无")):
        with pytest.raises(FitError):
            fit(key, value)


TYPES = sorted(RULES)


@settings(max_examples=300, deadline=None)
@given(kind=st.sampled_from(TYPES), value=st.text(max_size=60))
def test_whatever_fit_returns_wechat_accepts(kind, value):
    """Open-ended text: fit either says it cannot, or gives a value WeChat's rules (as the
    emulator checks them, written separately) accept."""
    key = f"{kind}1"
    try:
        fitted = fit(key, value)
    except FitError:
        assert kind not in ("thing", "const")  # free text always fits a thing
        return
    assert field_error(key, fitted) is None, (value, fitted)
    assert field_type(key) == kind


@settings(max_examples=100, deadline=None)
@given(st.datetimes(), st.integers(min_value=0, max_value=600))
def test_times_as_producers_write_them_always_fit(start, minutes):
    from datetime import timedelta

    end = start + timedelta(minutes=minutes)
    for text in (f"{start:%m月%d日} 周六 {start:%H:%M}-{end:%H:%M}", f"{start:%Y年%m月%d日 %H:%M}",
                 f"{start.month}月{start.day}日（周六）{start:%H:%M}-{end:%H:%M}"):
        assert field_error("time1", fit("time1", text)) is None, text


# ---- consent ------------------------------------------------------------------------------------

def now(svc):
    return svc.clock.now()


def test_consent_grants_refusals_and_one_time_use(svc):
    with svc.db.transaction() as s:
        t = now(svc)
        notices.record_consent(s, "o_c1", "tpl-once", accepted=True, source="h5_popup", now=t)
        notices.record_consent(s, "o_c1", "tpl-once", accepted=True, source="page", now=t)
        assert notices.may_send(s, "o_c1", "tpl-once", "one_time")
        notices.spent(s, "o_c1", "tpl-once", t)
        notices.spent(s, "o_c1", "tpl-once", t)
        assert not notices.may_send(s, "o_c1", "tpl-once", "one_time")  # two grants, two notices
        assert notices.may_send(s, "o_c1", "tpl-once", "long_term")
        notices.record_consent(s, "o_c1", "tpl-once", accepted=False, source="settings", now=t)
        assert not notices.may_send(s, "o_c1", "tpl-once", "long_term")
        row = s.scalar(select(NoticeConsent))
        assert (row.state, row.grants, row.source, row.refused_at is not None) == ("rejected", 0, "settings", True)
        assert notices.consenting(s, ["o_c1", "o_c2"], "tpl-once", "long_term") == set()
        with pytest.raises(notices.ConsentError):
            notices.record_consent(s, "", "tpl", accepted=True, source="page", now=t)
        with pytest.raises(notices.ConsentError):
            notices.record_consent(s, "o_c1", "tpl", accepted=True, source="somewhere", now=t)


def test_the_webhook_records_consent_from_subscribe_events(svc, wechat_plain):
    popup = {"List": [{"TemplateId": "volbot-bus-visit", "SubscribeStatusString": "accept", "PopupScene": 1},
                      {"TemplateId": "volbot-bus-change", "SubscribeStatusString": "reject", "PopupScene": 1}]}
    assert wechat_plain.event("o_hook_1", "subscribe_msg_popup_event", None, SubscribeMsgPopupEvent=popup) == ""
    with svc.db.transaction() as s:
        rows = {r.template_id: (r.state, r.source) for r in s.scalars(select(NoticeConsent))}
    assert rows == {"volbot-bus-visit": ("accepted", "h5_popup"), "volbot-bus-change": ("rejected", "h5_popup")}
    change = {"List": {"TemplateId": "volbot-bus-visit", "SubscribeStatusString": "reject"}}  # one item: no list
    svc.clock.advance(seconds=2)
    assert wechat_plain.event("o_hook_1", "subscribe_msg_change_event", None, SubscribeMsgChangeEvent=change) == ""
    with svc.db.transaction() as s:
        assert not notices.may_send(s, "o_hook_1", "volbot-bus-visit", "long_term")
    # Unfollowing erases their consent (WeChat asks us to delete an unfollower's data).
    svc.clock.advance(seconds=2)
    wechat_plain.event("o_hook_1", "subscribe_msg_popup_event", None, SubscribeMsgPopupEvent=popup)
    svc.clock.advance(seconds=2)
    wechat_plain.event("o_hook_1", "unsubscribe")
    with svc.db.transaction() as s:
        assert s.scalar(select(NoticeConsent).where(NoticeConsent.openid == "o_hook_1")) is None
    # Garbage items are skipped, the event still answered.
    assert wechat_plain.event("o_hook_1", "subscribe_msg_popup_event", None,
                              SubscribeMsgPopupEvent={"List": {"TemplateId": "", "SubscribeStatusString": "x"}}) == ""


# ---- every kind through its channel, against the emulator ---------------------------------------

def consent_both(svc, emulator, openid, template_id):
    """The user taps 允许: WeChat (the emulator) and our record both know it."""
    emulator.admin("notice-consent", openid=openid, template_id=template_id, accept=True)
    with svc.db.transaction() as s:
        notices.record_consent(s, openid, template_id, accepted=True, source="h5_popup", now=now(svc))


def record(svc, openid, kind, key, **fields):
    with svc.db.transaction() as s:
        push = notify(s, openid=openid, kind=kind, title="通知", fields={**SAMPLES, **fields}, dedup_key=key)
        return push.id


def rows(svc) -> dict[str, Push]:
    with svc.db.transaction() as s:
        return {p.dedup_key: p for p in s.scalars(select(Push))}


def test_every_kind_goes_by_its_channel(svc, dispatcher, emulator):
    catalog = default_catalog()
    for i, kind in enumerate(k for k in catalog.kinds.values() if k.channel != "mass_send"):
        openid = f"o_kind_{i:02d}"
        if kind.channel == "subscribe":
            consent_both(svc, emulator, openid, kind.template_id)
        if kind.channel == "customer_service":
            emulator.admin("interactions", openid=openid, kind="message")
        record(svc, openid, kind.name, kind.name)
    run_pass(svc)
    drain(svc)
    sent = rows(svc)
    assert {k: p.state for k, p in sent.items()} == {k: "sent" for k in sent}
    assert all(p.channel == catalog.channel(k) for k, p in sent.items())
    templates = {m["template_id"] for m in emulator.messages()}
    notices_sent = requests.get(emulator.url + "/_emulator/notices", timeout=5).json()
    assert templates == {k.template_id for k in catalog.kinds.values() if k.channel == "template"}
    assert {n["template_id"] for n in notices_sent} == {
        k.template_id for k in catalog.kinds.values() if k.channel == "subscribe"}
    assert emulator.stats()["custom_messages"] == 1
    assert all("first" not in m["data"] for m in emulator.messages())


def test_no_consent_no_send_and_one_time_consent_is_used_up(svc, dispatcher, emulator):
    record(svc, "o_nc_1", "bus_visit", "a")  # never consented
    consent_both(svc, emulator, "o_nc_2", "volbot-shift-reminder")  # one-time, once
    record(svc, "o_nc_2", "shift_reminder", "b1")
    record(svc, "o_nc_2", "shift_reminder", "b2")
    run_pass(svc)
    drain(svc)
    got = rows(svc)
    assert got["a"].state == "failed" and got["a"].last_error.startswith(notices.NO_CONSENT)
    assert sorted((got["b1"].state, got["b2"].state)) == ["failed", "sent"]
    assert len(emulator.calls("bizsend")) == 1  # nothing tried without consent
    with svc.db.transaction() as s:
        c = s.scalar(select(NoticeConsent).where(NoticeConsent.openid == "o_nc_2"))
        assert (c.grants, c.sent) == (1, 1)
        assert notices.meaning(got["a"].last_error) == "用户未订阅此通知"


def test_a_refusal_revokes_consent_and_nothing_is_sent_twice(svc, dispatcher, emulator):
    consent_both(svc, emulator, "o_ref_1", "volbot-bus-visit")
    emulator.admin("notice-consent", openid="o_ref_1", template_id="volbot-bus-visit", via="settings")  # WeChat knows
    record(svc, "o_ref_1", "bus_visit", "r1")
    record(svc, "o_ref_1", "order_update", "r2")
    run_pass(svc)
    drain(svc)
    got = rows(svc)
    assert got["r1"].state == "failed" and got["r1"].last_error.startswith("43101")
    assert got["r2"].state == "sent"  # other notices still reach the user
    with svc.db.transaction() as s:
        assert not notices.may_send(s, "o_ref_1", "volbot-bus-visit", "long_term")
        assert s.scalar(select(Follower.push_blocked).where(Follower.openid == "o_ref_1")) is None
    record(svc, "o_ref_1", "bus_visit", "r3")
    run_pass(svc)
    drain(svc)
    assert rows(svc)["r3"].last_error.startswith(notices.NO_CONSENT)
    assert len(emulator.calls("bizsend")) == 1


def test_a_banned_template_pauses_its_kind_until_resumed(svc, dispatcher, emulator):
    emulator.fault(endpoint="template", errcode=43116, times=1)
    record(svc, "o_ban_1", "hours_result", "h1")
    record(svc, "o_ban_2", "hours_result", "h2")
    record(svc, "o_ban_3", "star_level", "s1")
    run_pass(svc)
    drain(svc)
    got = rows(svc)
    assert got["h1"].state == got["h2"].state == "pending" and got["s1"].state == "sent"
    assert len(emulator.calls("template")) == 2  # h2 was not tried once h1 found the ban
    with svc.db.transaction() as s:
        assert set(notices.paused(s)) == {"hours_result"}
        assert ("pending", "模板被封禁，此类通知已暂停", 2) in notices.outcomes(s, Push.kind == "hours_result")
    with svc.db.transaction() as s:
        assert notices.resume(s, "hours_result", now(svc)) == 2
        assert s.get(PausedKind, "hours_result") is None
    run_pass(svc)
    drain(svc)
    assert {rows(svc)[k].state for k in ("h1", "h2")} == {"sent"}
    assert len(emulator.messages()) == 3  # each once


def test_review_block_and_the_closed_window(svc, dispatcher, emulator):
    emulator.fault(endpoint="template", errcode=40252, openid="o_rev_1")
    emulator.fault(endpoint="template", errcode=40249, openid="o_rev_2")
    record(svc, "o_rev_1", "order_update", "held")
    record(svc, "o_rev_2", "order_update", "blocked")
    record(svc, "o_rev_3", "inbox_answer", "window")  # never wrote to us: the window is closed
    run_pass(svc)
    drain(svc)
    got = rows(svc)
    assert (got["held"].state, got["blocked"].state, got["window"].state) == ("held", "failed", "failed")
    assert got["window"].last_error.startswith("45015")
    with svc.db.transaction() as s:
        said = {m for _, m, _ in notices.outcomes(s)}
    assert {"微信审核中（约30分钟）", "被微信拦截", "超出48小时回复时限"} <= said
    run_pass(svc)
    drain(svc)
    assert len(emulator.calls("template")) == 2  # neither the held nor the blocked one again


def test_a_notice_lost_with_its_worker_is_not_resent(svc, dispatcher, emulator):
    """bizsend has no client_msg_id: a lost attempt ends as unknown instead of a duplicate."""
    consent_both(svc, emulator, "o_lost_1", "volbot-bus-visit")
    pid = record(svc, "o_lost_1", "bus_visit", "lost")
    [claimed] = dispatcher.claim([pid])
    dispatcher.client.send_notice(claimed.openid, "volbot-bus-visit", dispatcher.catalog.kind("bus_visit")
                                  .render(claimed.data))  # sent, then the worker died
    svc.clock.advance(seconds=dispatcher.settings.lease_seconds + 5)
    run_pass(svc)
    drain(svc)
    row = rows(svc)["lost"]
    assert row.state == "failed" and "cannot deduplicate" in row.last_error
    assert len(requests.get(emulator.url + "/_emulator/notices", timeout=5).json()) == 1


def test_push_status_says_why_and_resume_kind_releases_a_paused_kind(svc):
    from click.testing import CliRunner

    from bot.cli import main

    env = {"DATABASE_URL": svc.config.database_url or svc.config.sqlalchemy_url, "REDIS_URL": svc.redis_url,
           "VOLBOT_INSTANCE": str(svc.config.instance_path), "VOLBOT_ENV": "testing"}
    record(svc, "o_cli_1", "hours_result", "c1")
    record(svc, "o_cli_2", "bus_visit", "c2")
    with svc.db.transaction() as s:
        s.execute(Push.__table__.update().where(Push.dedup_key == "c1")
                  .values(state="pending", last_error="43116 template banned: kind paused"))
        s.execute(Push.__table__.update().where(Push.dedup_key == "c2")
                  .values(state="failed", last_error="no consent: the user has not subscribed to this notice"))
        notices.pause(s, "hours_result", "volbot-hours-result", "43116 template banned by WeChat", now(svc))
    run = CliRunner().invoke
    out = run(main, ["push", "status"], env=env)
    assert out.exit_code == 0, out.output
    assert "用户未订阅此通知" in out.output and "模板被封禁" in out.output
    assert "by channel: subscribe 1 · template 1" in out.output and "PAUSED hours_result" in out.output
    out = run(main, ["push", "resume-kind", "hours_result"], env=env)
    assert out.exit_code == 0 and "1 waiting pushes due now" in out.output, out.output
    assert run(main, ["push", "resume-kind", "hours_result"], env=env).exit_code != 0  # not paused any more
