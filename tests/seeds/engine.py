"""Seeds for the dialogue-engine tests (tests/conversations/engine.yaml)."""

from __future__ import annotations

from datetime import datetime, timezone

from store.models import Follower
from tests.seeds import seed


@seed
def engine_known_phone(session):
    """A follower whose phone is on file: the demo form offers it as the default."""
    session.add(Follower(openid="o_eng_default", subscribed=True, phone="13912345678",
                         subscribed_at=datetime(2026, 1, 5, tzinfo=timezone.utc)))


@seed
def engine_voice_station(session):
    """o_eng_call lives in 樱桃社区, whose station has a phone; o_eng_far lives in 远山社区,
    whose own station has no phone and no other station is within reach (the hotline)."""
    from store.models import Community, Place

    home = Community(code="ENG-YT", name="樱桃社区", street="东关街道", lat=36.70, lng=119.10)
    far = Community(code="ENG-YS", name="远山社区", street="北苑街道", lat=36.95, lng=119.40)
    session.add_all([home, far])
    session.flush()
    session.add_all([
        Place(code="ENG-ST1", name="樱桃社区志愿服务站", kind="station", community_id=home.id,
              lat=36.701, lng=119.101, phone="0536-8123456"),
        Place(code="ENG-PZ1", name="樱桃广场", kind="plaza", community_id=home.id,
              lat=36.702, lng=119.102, phone="0536-8999999"),
        Place(code="ENG-ST2", name="远山社区志愿服务站", kind="station", community_id=far.id,
              lat=36.951, lng=119.401),
    ])
    session.add(Follower(openid="o_eng_call", subscribed=True, community_id=home.id))
    session.add(Follower(openid="o_eng_far", subscribed=True, community_id=far.id))
