"""Volunteer sign-up over the real webhook: happy path, every wrong answer, minors,
approval by a coordinator, and the privacy of ID numbers and phones."""

from __future__ import annotations

import logging
from datetime import date, datetime, timezone

import pytest
from sqlalchemy import select

from rules import pii, teams, volunteering
from store.models import Coordinator, Follower, Volunteer
from tests import seeds
from tests.seeds.volunteers import id_number

ADULT_ID = id_number(born=date(1985, 3, 14), order="217")


def test_signup_happy_path_auto_team(wechat, caplog):
    caplog.set_level(logging.DEBUG)
    seeds.apply(wechat.services, ["vol_teams"])
    say = lambda text: wechat.say("o_new", text)  # noqa: E731 - a one-line helper beside its use
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
        assert v.consent_at is not None and v.consent_version == volunteering.rules().privacy_version == "2026-11"
        assert s.scalar(select(Follower.phone).where(Follower.openid == "o_new")) == "13812345678"
    # Nothing personal reached Redis or the logs.
    for key in wechat.services.redis.keys("*"):
        value = wechat.services.redis.get(key) if wechat.services.redis.type(key) == b"string" else b""
        assert ADULT_ID.encode() not in (value or b"")
    assert ADULT_ID not in caplog.text and "13812345678" not in caplog.text
    # Signing up again is refused with the number.
    assert f"KW{year}000001" in say("注册")


# ---- the store rules behind the form --------------------------------------------------

NOW = datetime(2026, 11, 28, 8, 0, tzinfo=timezone.utc)
TODAY = date(2026, 11, 28)


def register(s, svc, openid, idn, team_code="VT-DF", **kw):
    f = Follower(openid=openid, subscribed=True)
    s.add(f)
    s.flush()
    return volunteering.register(s, pii_key=svc.settings.pii_key, follower=f, name="测试", phone="13900001111",
                                 id_number=pii.parse_id_number(idn, TODAY), team=teams.by_code(s, team_code),
                                 now=NOW, **kw)


def test_register_rules(svc):
    seeds.apply(svc, ["vol_coordinators"])
    with svc.db.transaction() as s:
        minor = id_number(born=date(2010, 1, 1), order="301")
        with pytest.raises(volunteering.VolunteerError, match="监护人"):
            register(s, svc, "o_r1", minor)
        with pytest.raises(volunteering.VolunteerError, match="监护人"):
            register(s, svc, "o_r2", minor, guardian_name="周大明")
        v = register(s, svc, "o_r3", minor, guardian_name="周大明", guardian_phone="13700001111")
        assert v.state == "active" and v.guardian_name == "周大明"
        with pytest.raises(volunteering.VolunteerError, match="已经注册"):
            register(s, svc, "o_r4", minor, guardian_name="周大明", guardian_phone="13700001111")
        with pytest.raises(volunteering.VolunteerError, match="小队"):
            register(s, svc, "o_r5", id_number(order="302"), team_code="VT-DG")
        with pytest.raises(volunteering.VolunteerError, match="隐私"):
            register(s, svc, "o_r6", id_number(order="303"), consent=False)
        pending = register(s, svc, "o_r7", id_number(order="304"), team_code="VT-XH")
        assert pending.state == "pending"
        # Approval only by a coordinator whose subtree holds the team, once, rejection with a reason.
        by = s.scalar(select(Coordinator).where(Coordinator.name == "李协调"))
        dg = s.scalar(select(Coordinator).where(Coordinator.name == "王协调"))
        with pytest.raises(volunteering.VolunteerError, match="范围"):
            volunteering.decide_volunteer(s, pending, approve=True, now=NOW, coordinator=by)
        with pytest.raises(volunteering.VolunteerError, match="原因"):
            volunteering.decide_volunteer(s, pending, approve=False, now=NOW, coordinator=dg)
        assert volunteering.decide_volunteer(s, pending, approve=True, now=NOW, coordinator=dg)
        assert not volunteering.decide_volunteer(s, pending, approve=False, reason="迟了", now=NOW, coordinator=dg)
        assert (pending.state, pending.decided_by) == ("active", dg.id)


def test_numbers_restart_each_year_and_never_repeat(svc):
    seeds.apply(svc, ["vol_teams"])
    with svc.db.transaction() as s:
        assert [volunteering.next_serial(s, 2026) for _ in range(3)] == [1, 2, 3]
        assert volunteering.next_serial(s, 2027) == 1
        assert volunteering.format_number("KW", 2026, 42) == "KW2026000042"
