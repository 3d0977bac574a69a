"""The demo district: shaped like the source, inside the district, written through the
domain rules (hours approved → stars and time bank), marked as demo, and the same on
every run."""

from __future__ import annotations

import random
from datetime import datetime, timezone

from sqlalchemy import func, select

from demo import district, geography, names
from rules import volunteering
from store.models import Community, Coordinator, Follower, HourRecord, Push, Team, Volunteer
from store.models.activities import Activity, Project, Shift
from store.models.places import Place

NOW = datetime(2026, 11, 28, 8, 0, tzinfo=timezone.utc)


def count(session, model, *where):
    return session.scalar(select(func.count()).select_from(model).where(*where))


def test_seeded_district_has_the_source_shape_and_obeys_the_rules(svc):
    with svc.db.transaction() as s:
        assert not district.is_seeded(s)
        summary = district.seed(s, now=NOW, pii_key=svc.config.pii_key)
    with svc.db.session() as s:
        assert district.is_seeded(s)
        kinds = dict(s.execute(select(Team.kind, func.count()).group_by(Team.kind)).all())
        assert kinds["brigade"] == 1 and kinds["detachment"] == 75
        assert kinds["squad"] >= 100 and kinds["professional"] >= 10
        assert count(s, Place, Place.kind == "plaza") == 13
        assert count(s, Place, Place.kind == "station") >= 260
        for lat, lng in s.execute(select(Place.lat, Place.lng)):
            assert geography.contains(lat, lng), (lat, lng)
            assert 36.66 <= lat <= 36.76 and 119.08 <= lng <= 119.20
        assert count(s, Project) == 150
        assert count(s, Activity, Activity.starts_at > NOW) >= 150
        assert count(s, Shift) >= count(s, Activity)
        assert count(s, Volunteer) >= 300
        # Everything generated is marked.
        for model in (Team, Community, Place, Volunteer, Coordinator, Project, Activity):
            assert count(s, model, model.is_demo.is_(False)) == 0, model.__name__
        assert count(s, Follower, Follower.openid.not_like("o_demo_%")) == 0
        assert count(s, HourRecord, HourRecord.source_ref.not_like("DEMO:%")) == 0
        # Star levels come from approved hours, and every level is present.
        rule = volunteering.rules()
        levels = {}
        for v in s.scalars(select(Volunteer)):
            minutes = volunteering.approved_minutes(s, v.id)
            assert v.star_level == rule.star_for(minutes)
            levels[v.star_level] = levels.get(v.star_level, 0) + 1
        assert all(levels.get(level, 0) >= 3 for level in range(len(rule.stars) + 1)), levels
        # Approval credited the time bank minute for minute (rate 1/1, under the cap).
        sample = s.scalars(select(Volunteer).where(Volunteer.star_level == 2).limit(3)).all()
        for v in sample:
            assert volunteering.summary(s, v, NOW).balance == volunteering.approved_minutes(s, v.id)
        # Some recent service waits for the tour's squad leader.
        squad_leader = s.scalar(select(Coordinator).where(Coordinator.username == "demo_squad"))
        assert volunteering.pending_hours(s, squad_leader)
        # Skills are needs-menu categories (what dispatch matches on); resident 1's
        # neighbour can do everything and serves in their community's squad.
        from menus import catalog

        categories = {c.code for c in catalog.load().categories}
        for skills in s.scalars(select(Volunteer.skills)):
            assert skills and set(skills) <= categories
        neighbour = s.scalar(select(Volunteer).join(Follower, Volunteer.follower_id == Follower.id)
                             .where(Follower.openid == "o_demo_vol_002"))
        resident = s.scalar(select(Follower).where(Follower.openid == "o_demo_res_001"))
        assert set(neighbour.skills) == categories and neighbour.team.community_id == resident.community_id
        _tour_story_holds(s, neighbour, resident)
        # History imported before following: nobody was pushed about old stars.
        assert count(s, Push) == 0
        # Personas and logins the simulator and banner show.
        assert {r for _, r, _ in summary.personas} == {"resident", "volunteer", "coordinator"}
        assert {u for u, *_ in summary.logins} == {"demo_brigade", "demo_street", "demo_squad"}
        for openid, _, _ in summary.personas:
            assert count(s, Follower, Follower.openid == openid) == 1


def _tour_story_holds(s, neighbour, resident):
    """The README's guided tour, as data: the resident sends the location of a station of
    their community; that community is the nearest one (asked about first), the order
    placed there is offered to the neighbour first, and approving its hours raises the
    neighbour's time-bank balance (they are far under the cap)."""
    from datetime import timedelta

    from rules import dispatch
    from rules.orders import distance_m
    from store.models import Order

    communities = list(s.scalars(select(Community)))

    def nearest(lat, lng):
        return min(communities, key=lambda c: distance_m(lat, lng, c.lat, c.lng))

    for place in s.scalars(select(Place).where(Place.community_id.is_not(None))):
        assert nearest(place.lat, place.lng).id == place.community_id, place.name
    home = s.get(Community, resident.community_id)
    station = s.scalar(select(Place).where(Place.community_id == home.id).order_by(Place.id).limit(1))
    order = Order(number="D20261128-9999", follower_id=resident.id, sub_code="x", sub_name="陪伴聊天",
                  category_code=neighbour.skills[0], category_name="x", lat=station.lat, lng=station.lng,
                  community_id=nearest(station.lat, station.lng).id,
                  preferred_date=(NOW + timedelta(days=1)).date(), preferred_slot="am")
    s.add(order)
    s.flush()
    ranked = [c for c in dispatch.rank(s, order, NOW) if c.offerable]
    assert ranked[0].volunteer.id == neighbour.id, [(c.volunteer.id, c.score, c.reasons) for c in ranked[:3]]
    rule = volunteering.rules()
    balance = volunteering.summary(s, neighbour, NOW).balance
    assert balance + 8 * 60 <= rule.bank.cap_minutes, balance


def test_generated_rows_are_the_same_on_every_run():
    communities = [Community(code=f"DEMO-C{i:03d}", name=f"{i}社区", street=geography.STREETS[i % 8][0],
                             lat=geography.STREETS[i % 8][1], lng=geography.STREETS[i % 8][2])
                   for i in range(1, 89)]
    a = district.place_rows(random.Random(1), communities)
    b = district.place_rows(random.Random(1), communities)
    assert a == b
    assert district.team_rows(communities) == district.team_rows(communities)
    rng1, rng2 = random.Random(7), random.Random(7)
    today = NOW.date()
    assert [names.name(rng1) for _ in range(20)] == [names.name(rng2) for _ in range(20)]
    person = names.id_number(random.Random(3), today, min_age=20)
    assert person.number.startswith(names.REGION) and person.age_on(today) >= 20
