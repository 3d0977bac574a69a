"""Bus set-ups: two communities with bus visits coming, and subscribers.

Codes start with BUS- so they cannot clash with other domains' seeds. Times are relative
to the real clock (the tests' clock starts there), in Beijing time.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta, timezone

from rules import bus
from store.models import Community, Follower
from tests.seeds import seed

COMMUNITIES = [("BUS-DF", "巴士东风社区", "东关街道"), ("BUS-XH", "巴士新华社区", "东关街道"),
               ("BUS-BY", "巴士北苑社区", "北苑街道")]


def communities(session) -> dict[str, Community]:
    found = {}
    for code, name, street in COMMUNITIES:
        c = Community(code=code, name=name, street=street)
        session.add(c)
        found[code] = c
    session.flush()
    return found


def in_days(days: int, start: time = time(9, 0), end: time = time(11, 30)):
    day = datetime.now(bus.CHINA).date() + timedelta(days=days)
    return bus.local_span(day, start, end)


@seed
def bus_communities(session):
    communities(session)


@seed
def bus_visits(session):
    """Communities, two subscribers of 巴士东风社区 and visits in 3 days (东风) and 5 days (新华)."""
    found = communities(session)
    for openid in ("o_bus_sub1", "o_bus_sub2"):
        f = Follower(openid=openid, subscribed=True)
        session.add(f)
        session.flush()
        bus.subscribe(session, f, found["BUS-DF"], source="cli")
    now = datetime.now(timezone.utc)
    start, end = in_days(3)
    bus.schedule(session, community=found["BUS-DF"], starts_at=start, ends_at=end, place="东风社区文化广场",
                 services=["health", "lawyer", "library"], now=now)
    start, end = in_days(5, time(14, 0), time(16, 0))
    bus.schedule(session, community=found["BUS-XH"], starts_at=start, ends_at=end, place="新华社区服务中心",
                 services=["recruit", "charity"], now=now)
