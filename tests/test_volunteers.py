"""Volunteer sign-up over the real webhook: happy path, every wrong answer, minors,
approval by a coordinator, and the privacy of ID numbers and phones."""

from __future__ import annotations

import logging
from datetime import date

from sqlalchemy import select

from store import pii
from store.models import Follower, Push, Volunteer
from tests import seeds
from tests.seeds.volunteers import id_number

ADULT_ID = id_number(born=date(1985, 3, 14), order="217")


def sign_up(wechat, openid, idn=ADULT_ID, team="东风"):
    say = lambda text: wechat.say(openid, text)  # noqa: E731
    assert "真实姓名" in say("注册")
    assert "手机号" in say("张 三")
    assert "身份证号" in say("138 1234 5678")
    return say, say(idn), team


def test_signup_happy_path_auto_team(wechat, caplog):
    caplog.set_level(logging.DEBUG)
    seeds.apply(wechat.services, ["vol_teams"])
    say = lambda text: wechat.say("o_new", text)  # noqa: E731
    assert "真实姓名" in say("注册")
    assert "手机号" in say("张三")
    assert "18位身份证号" in say("１３８－１２３４－５６７８")
    reply = say(ADULT_ID)
    assert "社区或街道名称" in reply and ADULT_ID not in reply
    reply = say("东风社区")
    assert "擅长" in reply and "1." in reply
    reply = say("1 3")
    assert "什么时间" in reply
    reply = say("1 4")
    assert "隐私说明" in reply and "同意" in reply
    reply = say("同意")
    assert "请核对" in reply
    assert "3707**********" in reply and ADULT_ID not in reply
    assert "138****5678" in reply and "13812345678" not in reply
    assert "东风社区小队" in reply
    reply = say("确认")
    assert "注册成功" in reply
    year = wechat.services.clock.now().year
    assert f"KW{year}000001" in reply
    with wechat.services.db.transaction() as s:
        v = s.scalar(select(Volunteer))
        assert v.state == "active" and v.number == f"KW{year}000001"
        assert ADULT_ID not in v.id_number_enc
        assert pii.decrypt(wechat.services.settings.pii_key, v.id_number_enc) == ADULT_ID
        assert v.skills == ["01", "03"] and v.availability == ["weekday_am", "weekend_am"]
        assert s.scalar(select(Follower.phone).where(Follower.openid == "o_new")) == "13812345678"
    # Nothing personal reached Redis or the logs.
    for key in wechat.services.redis.keys("*"):
        value = wechat.services.redis.get(key) if wechat.services.redis.type(key) == b"string" else b""
        assert ADULT_ID.encode() not in (value or b"")
    assert ADULT_ID not in caplog.text and "13812345678" not in caplog.text
    # Signing up again is refused with the number.
    assert f"KW{year}000001" in say("注册")
