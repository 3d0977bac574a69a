"""A form at its confirmation step while Redis fails: the user hears "系统繁忙，请稍后再试"
in time, and once Redis is back exactly one record exists — none lost, none doubled.

Two failures are played over HTTP: Redis unreachable for the whole turn (an extra live
app pointed at a dead Redis), and Redis failing in the middle of the turn, after the form
was completed in SQL but before its state was saved.
"""

from __future__ import annotations

import socket
import time

import pytest
import redis
from sqlalchemy import text

from dialogue.types import BUSY
from tests import demo_flows
from tests.conftest import WeChat
from tests.protocol_support import broken_services, live

demo_flows.register()

TO_SUMMARY = ["演示", "2", "1", "2", "奎文区东风东街1号", "13800138000", "11010519491231002X", "2", "跳过"]
RECORDS = "SELECT count(*) FROM coordinator_messages WHERE flow = 'demo' AND step = 'done'"


def records(svc) -> int:
    with svc.db.engine.connect() as conn:
        return conn.execute(text(RECORDS)).scalar_one()


def fill_to_summary(chat: WeChat, openid: str) -> None:
    for answer in TO_SUMMARY:
        reply = chat.say(openid, answer)
    assert "请核对以下信息" in reply, reply


def unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_redis_unreachable_at_confirmation_then_back(wechat, svc):
    fill_to_summary(wechat, "o_redis_down")
    broken = broken_services(svc, redis_url=f"redis://127.0.0.1:{unused_port()}/0")
    try:
        with live(broken) as url:
            down = WeChat(url, svc, encrypt=wechat.encrypt)
            started = time.monotonic()
            assert down.say("o_redis_down", "确认") == BUSY.text == "系统繁忙，请稍后再试。"
            assert time.monotonic() - started < svc.config.reply_deadline
            assert down.say("o_redis_down", "确认") == BUSY.text
    finally:
        broken.close()
    assert records(svc) == 0
    # Redis is back (the real app): the form is still at its summary and commits once.
    assert "演示预约已提交" in wechat.say("o_redis_down", "确认")
    first = wechat.last
    assert "演示预约已提交" in wechat.send(first).text  # WeChat's retry of the same MsgId
    assert records(svc) == 1
    assert "请回复数字选择服务" in wechat.say("o_redis_down", "确认")  # no form left to commit
    assert records(svc) == 1


@pytest.fixture
def app_pipeline(live_app):
    return live_app[0].extensions["volbot.pipeline"]


def test_redis_failing_mid_turn_neither_loses_nor_doubles(wechat, svc, app_pipeline, monkeypatch):
    fill_to_summary(wechat, "o_redis_blip")
    real_save = app_pipeline.states.save
    calls = []

    def failing_save(openid, state):
        calls.append(openid)
        raise redis.ConnectionError("Redis went away")

    # Redis drops after the engine completed the form in SQL, before the state is saved.
    monkeypatch.setattr(app_pipeline.states, "save", failing_save)
    assert wechat.say("o_redis_blip", "确认") == BUSY.text
    assert calls == ["o_redis_blip"]
    assert records(svc) == 0  # the completion was rolled back with the failed turn

    monkeypatch.setattr(app_pipeline.states, "save", real_save)  # Redis is back
    assert "演示预约已提交" in wechat.say("o_redis_blip", "确认")
    assert "请回复数字选择服务" in wechat.say("o_redis_blip", "确认")
    assert records(svc) == 1
