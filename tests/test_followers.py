"""Following and leaving: subscribe creates or revives the follower (a community QR binds
them), unsubscribe erases personal data and unlinks volunteer records, which stay."""

from __future__ import annotations

import json

from sqlalchemy import select

from handlers import registry
from store.models import Community, Follower, Team, Volunteer


def follower(svc, openid: str) -> Follower | None:
    with svc.db.transaction() as session:
        return session.scalar(select(Follower).where(Follower.openid == openid))


def add_community(svc, code="KW001", name="东风社区") -> int:
    with svc.db.transaction() as session:
        community = Community(code=code, name=name)
        session.add(community)
        session.flush()
        return community.id


def test_subscribe_creates_a_follower_and_welcomes(wechat, svc):
    reply = wechat.event("o_f1", "subscribe")
    assert "欢迎关注" in reply and "1. 预约志愿服务" in reply
    f = follower(svc, "o_f1")
    assert f.subscribed and f.subscribed_at is not None and f.scene is None and f.community_id is None


def test_community_qr_binds_the_community(wechat, svc):
    community_id = add_community(svc)
    assert "欢迎关注" in wechat.event("o_f2", "subscribe", "qrscene_cm:KW001", Ticket="tk")
    f = follower(svc, "o_f2")
    assert (f.scene, f.community_id) == ("cm:KW001", community_id)
    # Following again without a scene keeps what is there.
    wechat.event("o_f2", "subscribe")
    assert follower(svc, "o_f2").community_id == community_id
    # An unknown community code is remembered as the scene but binds nothing new.
    wechat.event("o_f2", "subscribe", "qrscene_cm:NOPE")
    f = follower(svc, "o_f2")
    assert (f.scene, f.community_id) == ("cm:NOPE", community_id)


def test_scan_while_following_binds_a_community(wechat, svc):
    community_id = add_community(svc, "KW002", "北苑社区")
    wechat.event("o_f3", "subscribe")
    assert "已为您关联到该社区" in wechat.event("o_f3", "SCAN", "cm:KW002")
    assert follower(svc, "o_f3").community_id == community_id


def test_unsubscribe_erases_personal_data_and_runs_erasers(wechat, svc):
    add_community(svc)
    wechat.event("o_f4", "subscribe", "qrscene_cm:KW001")
    wechat.location("o_f4", 36.71, 119.12, "奎文区")
    wechat.event("o_f4", "LOCATION", Latitude="36.7", Longitude="119.1", Precision="30")
    with svc.db.transaction() as session:
        f = session.scalar(select(Follower).where(Follower.openid == "o_f4"))
        f.phone = "13800001234"
        assert f.last_lat is not None
    erased = []

    def eraser(ctx, who):
        erased.append(who.openid)

    registry.eraser(eraser)
    try:
        assert wechat.event("o_f4", "unsubscribe") == ""  # nothing is shown to someone who left
    finally:
        del registry.eraser_names[f"{eraser.__module__}.{eraser.__qualname__}"]
    f = follower(svc, "o_f4")
    assert erased == ["o_f4"]
    assert not f.subscribed and f.unsubscribed_at is not None
    assert (f.phone, f.last_lat, f.last_lng, f.last_location_at, f.community_id, f.scene) == (None,) * 6
    state = svc.redis.get("volbot:state:o_f4")  # only the CAS version survives
    assert state is None or set(json.loads(state)) == {"version"}


def test_volunteer_is_unlinked_but_kept_and_a_return_revives_the_follower(wechat, svc):
    wechat.event("o_f5", "subscribe")
    with svc.db.transaction() as session:
        team = Team(code="T1", name="东风小队", kind="squad")
        session.add(team)
        session.flush()
        f = session.scalar(select(Follower).where(Follower.openid == "o_f5"))
        session.add(Volunteer(number="KW2026000001", follower_id=f.id, name="张三", phone="13800001234",
                              id_number_enc="x", id_number_hash="h1", id_number_last4="1234",
                              birth_year=1990, team_id=team.id))
    wechat.event("o_f5", "unsubscribe")
    with svc.db.transaction() as session:
        volunteer = session.scalar(select(Volunteer).where(Volunteer.number == "KW2026000001"))
        assert volunteer is not None and volunteer.follower_id is None
    svc.clock.advance(seconds=2)  # same second, same event: that would be a retry
    reply = wechat.event("o_f5", "subscribe")
    assert "欢迎关注" in reply
    f = follower(svc, "o_f5")
    assert f.subscribed and f.unsubscribed_at is None
    with svc.db.transaction() as session:
        assert session.scalar(select(Volunteer.follower_id).where(Volunteer.number == "KW2026000001")) is None
        assert len(session.scalars(select(Follower).where(Follower.openid == "o_f5")).all()) == 1
