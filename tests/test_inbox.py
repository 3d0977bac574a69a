"""The staff inbox end to end: a resident stuck in a form leaves a message in chat → the
coordinators of their community's team get a template message (emulator) → the console lists
it only in scope → an answer inside WeChat's 48-hour window reaches the resident as a
customer-service message (emulator) → outside it the answer is refused → an unanswered
message escalates one level up after a working day → handled with a note."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
import requests
from sqlalchemy import select

from pushes.scheduler import run_pass
from rules import inbox, notices
from store.models import CoordinatorMessage, Follower, Push
from tests.console_support import signed_in
from tests.demo_flows import register
from tests.pushes_fixtures import drain
from tests.seeds import apply
from tests.seeds.console import coordinator
from tests.seeds.orders import resident
from tests.seeds.volunteers import team

register()
RES = "o_inbox_res1"
WORDS = "我不会填手机号，请工作人员明天上午打家里座机联系我"
BOUND = {"df_lead": "o_inbox_df", "dg_lead": "o_inbox_dg", "bs_lead": "o_inbox_bs", "admin": "o_inbox_kw"}


@pytest.fixture
def world(svc):
    """The console's team tree; four coordinators bound to WeChat; a resident of 东风."""
    apply(svc, ["console_world"])
    with svc.db.transaction() as s:
        for username, openid in BOUND.items():
            coordinator(s, username).follower_id = resident(s, openid).id
        resident(s, RES).community_id = team(s, "VT-DF").community_id
        return {"df": team(s, "VT-DF").id}


def leave_message(w, openid: str, words: str) -> str:
    """Three wrong answers in the demo form, then 1 (给工作人员留言) and the message."""
    for text in ("演示", "2", "1", "很多人", "二十", "abc"):
        reply = w.say(openid, text)
    assert "给工作人员留言" in reply
    assert "请写下您想对工作人员说的话" in w.say(openid, "1")
    return w.say(openid, words)


def send_due(svc) -> None:
    run_pass(svc, recover=False)
    drain(svc)


def pushes(svc, kind: str) -> list[tuple[str, str]]:
    with svc.db.session() as s:
        return sorted(s.execute(select(Push.openid, Push.title).where(Push.kind == kind)).all())


def the_message(svc) -> CoordinatorMessage:
    with svc.db.session() as s:
        m = s.scalar(select(CoordinatorMessage).order_by(CoordinatorMessage.id.desc()))
        s.expunge(m)
        return m


def test_the_whole_loop(wechat_plain, base_url, svc, world, emulator, dispatcher):
    # The squad's coordinator subscribed to the inbox notice (long-term) when binding the console.
    emulator.admin("notice-consent", openid=BOUND["df_lead"], template_id="volbot-inbox-message", accept=True)
    with svc.db.transaction() as s:
        notices.record_consent(s, BOUND["df_lead"], "volbot-inbox-message", accepted=True, source="page",
                               now=svc.clock.now())
    reply = leave_message(wechat_plain, RES, WORDS)
    assert "留言已收到" in reply and "我的留言" in reply
    m = the_message(svc)
    assert (m.team_id, m.flow, m.step, m.text) == (world["df"], "demo", "people", WORDS)

    # The squad's coordinator is told at once, by a subscribe notice; nobody else yet.
    assert pushes(svc, "inbox_message") == [(BOUND["df_lead"], "居民留言待处理")]
    send_due(svc)
    sent = requests.get(emulator.url + "/_emulator/notices", params={"openid": BOUND["df_lead"]}, timeout=5).json()
    assert len(sent) == 1 and "留言" in str(sent[0]["data"])

    # The console: 东风 and the detachment above it see it; 北苑 neither lists nor opens it.
    df, bs = signed_in(base_url, "df_lead"), signed_in(base_url, "bs_lead")
    assert WORDS[:20] in df.get("/console/messages").text
    assert WORDS[:20] in signed_in(base_url, "dg_lead").get("/console/messages").text
    assert WORDS[:20] not in bs.get("/console/messages?state=all").text
    assert bs.get(f"/console/messages/{m.id}").status_code == 404
    assert bs.post(f"/console/messages/{m.id}/answer", {"answer": "越权"}).status_code == 404
    page = df.get(f"/console/messages/{m.id}").text
    assert WORDS in page and "演示预约" in page and "可在聊天中回复（至" in page

    # The answer inside the window reaches the resident as a customer-service message.
    emulator.admin("interactions", openid=RES, kind="message")  # WeChat saw their messages
    assert df.post(f"/console/messages/{m.id}/answer", {"answer": "好的，明天上午十点给您打电话"}).status_code == 302
    send_due(svc)
    custom = [c for c in emulator.state.custom_messages if c["touser"] == RES]
    assert len(custom) == 1 and "明天上午十点给您打电话" in custom[0]["text"]["content"]
    assert "已送达" in df.get(f"/console/messages/{m.id}").text

    # The resident sees that someone answered.
    mine = wechat_plain.say(RES, "我的留言")
    assert "工作人员已回复" in mine and "明天上午十点" in mine

    # Marked handled with a note.
    assert df.post(f"/console/messages/{m.id}/handle", {"note": "已电话联系"}).status_code == 302
    m = the_message(svc)
    assert m.handled and m.note == "已电话联系" and m.escalate_at is None
    assert "工作人员已回复" in wechat_plain.say(RES, "我的留言")


def test_outside_the_window_the_answer_is_refused(wechat_plain, base_url, svc, world):
    leave_message(wechat_plain, RES, WORDS)
    m = the_message(svc)
    svc.clock.advance(hours=49)
    df = signed_in(base_url, "df_lead")
    assert "已超过48小时，请电话联系" in df.get(f"/console/messages/{m.id}").text
    df.post(f"/console/messages/{m.id}/answer", {"answer": "您好"})
    assert "已超过48小时" in df.get(f"/console/messages/{m.id}").text
    assert the_message(svc).answered_at is None and pushes(svc, "inbox_answer") == []


def test_a_later_message_reopens_the_window(wechat_plain, base_url, svc, world):
    leave_message(wechat_plain, RES, WORDS)
    m = the_message(svc)
    svc.clock.advance(hours=47)
    wechat_plain.say(RES, "我的留言")  # a message two days later: 48 hours from now
    svc.clock.advance(hours=2)
    with svc.db.session() as s:
        row = s.get(CoordinatorMessage, m.id)
        assert inbox.window_open(row, row.follower, svc.clock.now())
    assert "可在聊天中回复" in signed_in(base_url, "df_lead").get(f"/console/messages/{m.id}").text


def test_a_window_closed_at_wechat_fails_the_push_without_blocking(wechat_plain, base_url, svc, world,
                                                                   emulator, dispatcher):
    """Our record of the window is a lower bound; should WeChat still refuse (45015), the
    answer fails, is shown as failed, and the resident still gets template messages."""
    leave_message(wechat_plain, RES, WORDS)
    m = the_message(svc)
    df = signed_in(base_url, "df_lead")
    df.post(f"/console/messages/{m.id}/answer", {"answer": "您好"})  # the emulator saw no message
    send_due(svc)
    with svc.db.session() as s:
        push = s.scalar(select(Push).where(Push.kind == "inbox_answer"))
        assert push.state == "failed" and push.last_error.startswith("45015")
        assert s.scalar(select(Follower.push_blocked).where(Follower.openid == RES)) is None
    assert "发送失败" in df.get(f"/console/messages/{m.id}").text


def test_unanswered_after_a_working_day_escalates_one_level_up(wechat_plain, svc, world, monkeypatch):
    leave_message(wechat_plain, RES, WORDS)
    m = the_message(svc)
    assert m.escalate_at == inbox.working_day_after(m.created_at)
    monkeypatch.setattr(svc.clock, "offset", m.escalate_at - datetime.now(timezone.utc) - timedelta(minutes=1))
    run_pass(svc, recover=False)
    assert pushes(svc, "inbox_message") == [(BOUND["df_lead"], "居民留言待处理")]  # not yet
    svc.clock.advance(minutes=2)
    run_pass(svc, recover=False)
    run_pass(svc, recover=False)  # a second pass does not tell them twice
    assert sorted(pushes(svc, "inbox_message")) == sorted([(BOUND["df_lead"], "居民留言待处理"),
                                                           (BOUND["dg_lead"], "居民留言超过1个工作日未回复")])
    m = the_message(svc)
    assert m.level == 1 and m.escalate_at == inbox.working_day_after(m.escalated_at)
    # A working day later, the brigade; then no level is left.
    svc.clock.offset += m.escalate_at - svc.clock.now() + timedelta(minutes=1)
    run_pass(svc, recover=False)
    assert (BOUND["admin"], "居民留言超过1个工作日未回复") in pushes(svc, "inbox_message")
    m = the_message(svc)
    assert m.level == 2 and m.escalate_at is None


def test_a_resident_without_a_community_goes_to_the_brigade(wechat_plain, svc, world):
    leave_message(wechat_plain, "o_inbox_nocomm", "请打电话给我")
    assert the_message(svc).team_id == team_id(svc, "VT-KW")
    assert pushes(svc, "inbox_message") == [(BOUND["admin"], "居民留言待处理")]


def team_id(svc, code: str) -> int:
    with svc.db.session() as s:
        return team(s, code).id


CHINA = timezone(timedelta(hours=8))


@pytest.mark.parametrize("left,due", [
    ("2026-03-04 10:00", "2026-03-05 10:00"),  # Wednesday → Thursday
    ("2026-03-06 17:00", "2026-03-09 17:00"),  # Friday evening → Monday evening
    ("2026-03-07 10:00", "2026-03-10 00:00"),  # Saturday → the end of Monday
    ("2026-03-08 23:30", "2026-03-10 00:00"),  # Sunday night → the end of Monday
])
def test_a_working_day(left, due):
    start = datetime.strptime(left, "%Y-%m-%d %H:%M").replace(tzinfo=CHINA)
    assert inbox.working_day_after(start.astimezone(timezone.utc)) == datetime.strptime(
        due, "%Y-%m-%d %H:%M").replace(tzinfo=CHINA)
