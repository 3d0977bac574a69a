"""The Volunteer Bus: scheduling, changing and cancelling visits, subscriptions, and the
pushes each announcement fans out to the community's subscribers.

Used by the chat journey (handlers/bus.py), the coordinators' CLI (`volbot bus ...`) and
the console alike. Every announcement is recorded in the caller's transaction: one push
per subscriber, dedup key `bus:<visit>:<change_no>:<kind>:<openid>`, batch
`bus-<visit>-<change_no>` (for `volbot push status --batch`), plus a reminder due the
evening before the visit.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from functools import lru_cache
from pathlib import Path
from zoneinfo import ZoneInfo

import yaml
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from store.bounded import bounded_int
from store.models import BusRoute, BusSubscription, BusVisit, Community, Follower, Push
from store.outbox import notify_many, withdraw

CHINA = ZoneInfo("Asia/Shanghai")
SERVICES_FILE = Path(__file__).resolve().parents[1] / "menus" / "bus_services.yaml"
REMINDER_AT = time(18, 0)  # the evening before, Beijing time
WEEKDAYS = "一二三四五六日"


class BusError(ValueError):
    """A coordinator's request that cannot be done; the message says why (in Chinese)."""


@dataclass(frozen=True)
class Service:
    code: str
    name: str


@lru_cache(maxsize=1)
def services_catalog() -> tuple[Service, ...]:
    """The bus's 12 kinds of service (read-only data, loaded once per process)."""
    raw = yaml.safe_load(SERVICES_FILE.read_text(encoding="utf-8"))
    return tuple(Service(s["code"], s["name"]) for s in raw["services"])


def parse_services(text: str | list[str]) -> list[str]:
    """Service codes from codes, names or numbers (1-12), comma/space separated."""
    items = text if isinstance(text, list) else text.replace("，", ",").replace("、", ",").replace(" ", ",").split(",")
    catalog = services_catalog()
    codes: list[str] = []
    for item in (i.strip() for i in items):
        if not item:
            continue
        found = next((s for s in catalog if item in (s.code, s.name)), None)
        number = bounded_int(item, 1, len(catalog))
        if found is None and number is not None:
            found = catalog[number - 1]
        if found is None:
            raise BusError(f"未知的服务项目：{item}（可选：{'、'.join(s.name for s in catalog)}）")
        if found.code not in codes:
            codes.append(found.code)
    if not codes:
        raise BusError("请至少选择一项服务。")
    return codes


def service_names(codes: list[str]) -> str:
    names = {s.code: s.name for s in services_catalog()}
    return "、".join(names.get(c, c) for c in codes)


def when_text(visit: BusVisit) -> str:
    start, end = visit.starts_at.astimezone(CHINA), visit.ends_at.astimezone(CHINA)
    return f"{start:%m月%d日} 周{WEEKDAYS[start.weekday()]} {start:%H:%M}-{end:%H:%M}"


def local_span(day: date, start: time, end: time) -> tuple[datetime, datetime]:
    """A visit's start and end (aware UTC) from a Beijing date and times."""
    if end <= start:
        raise BusError("结束时间必须晚于开始时间。")
    return (datetime.combine(day, start, tzinfo=CHINA).astimezone(timezone.utc),
            datetime.combine(day, end, tzinfo=CHINA).astimezone(timezone.utc))


# ---- subscriptions -----------------------------------------------------------------------------

def community_by_code(session: Session, code: str) -> Community:
    community = session.scalar(select(Community).where(Community.code == code))
    if community is None:
        raise BusError(f"没有编码为 {code} 的社区。")
    return community


def subscribe(session: Session, follower: Follower, community: Community, source: str = "chat") -> bool:
    """Subscribe; False when already subscribed (idempotent, safe under a concurrent retry)."""
    exists = session.scalar(select(BusSubscription.id).where(BusSubscription.follower_id == follower.id,
                                                              BusSubscription.community_id == community.id))
    if exists is not None:
        return False
    try:
        with session.begin_nested():
            session.add(BusSubscription(follower_id=follower.id, community_id=community.id, source=source))
            session.flush()
    except IntegrityError:
        return False
    return True


def unsubscribe(session: Session, follower: Follower, community_id: int) -> bool:
    done = session.execute(delete(BusSubscription).where(BusSubscription.follower_id == follower.id,
                                                         BusSubscription.community_id == community_id))
    return done.rowcount > 0


def subscribed_communities(session: Session, follower: Follower) -> list[Community]:
    return list(session.scalars(select(Community).join(BusSubscription, BusSubscription.community_id == Community.id)
                                .where(BusSubscription.follower_id == follower.id).order_by(Community.name)))


def erase_subscriptions(session: Session, follower: Follower) -> None:
    session.execute(delete(BusSubscription).where(BusSubscription.follower_id == follower.id))


# ---- visits ---------------------------------------------------------------------------------------

def upcoming(session: Session, now: datetime, community_ids: list[int] | None = None, limit: int = 5) -> list[BusVisit]:
    """Visits not yet over, soonest first (of the given communities, or all)."""
    q = select(BusVisit).where(BusVisit.state == "scheduled", BusVisit.ends_at >= now)
    if community_ids is not None:
        q = q.where(BusVisit.community_id.in_(community_ids))
    return list(session.scalars(q.order_by(BusVisit.starts_at).limit(limit)))


def route_by_code(session: Session, code: str, create: bool = True) -> BusRoute:
    route = session.scalar(select(BusRoute).where(BusRoute.code == code))
    if route is None:
        if not create:
            raise BusError(f"没有编码为 {code} 的线路。")
        route = BusRoute(code=code, name=code)
        session.add(route)
        session.flush()
    return route


def _check(starts_at: datetime, ends_at: datetime, place: str, now: datetime) -> None:
    if ends_at <= starts_at:
        raise BusError("结束时间必须晚于开始时间。")
    if ends_at <= now:
        raise BusError("这个时间已经过去了。")
    if not place.strip():
        raise BusError("请填写地点。")


def schedule(session: Session, *, community: Community, starts_at: datetime, ends_at: datetime, place: str,
             services: list[str], now: datetime, route: BusRoute | None = None,
             created_by: str | None = None) -> BusVisit:
    """A new visit, announced to every subscriber of its community."""
    _check(starts_at, ends_at, place, now)
    visit = BusVisit(community_id=community.id, route_id=route.id if route else None, starts_at=starts_at,
                     ends_at=ends_at, place=place.strip()[:128], services=parse_services(services),
                     created_by=created_by, created_at=now, updated_at=now)
    session.add(visit)
    session.flush()
    announce(session, visit, "bus_visit", f"志愿巴士{visit.community.name}服务预告", now)
    return visit


def change(session: Session, visit: BusVisit, *, now: datetime, starts_at: datetime | None = None,
           ends_at: datetime | None = None, place: str | None = None, services: list[str] | None = None,
           reason: str = "") -> BusVisit:
    """Change a visit's time, place or services; every subscriber is told once."""
    if visit.state != "scheduled":
        raise BusError("这次到访已取消，不能修改。")
    new_start, new_end = starts_at or visit.starts_at, ends_at or visit.ends_at
    new_place = place if place is not None else visit.place
    _check(new_start, new_end, new_place, now)
    what = []
    if (new_start, new_end) != (visit.starts_at, visit.ends_at):
        what.append("时间")
    if new_place.strip() != visit.place:
        what.append("地点")
    new_services = parse_services(services) if services is not None else visit.services
    if new_services != visit.services:
        what.append("服务项目")
    if not what:
        raise BusError("没有任何变化。")
    _cancel_reminders(session, visit)
    visit.starts_at, visit.ends_at, visit.place, visit.services = new_start, new_end, new_place.strip()[:128], new_services
    visit.change_no += 1
    visit.note = (reason.strip() or f"{'、'.join(what)}调整")[:200]
    visit.updated_at = now
    session.flush()
    announce(session, visit, "bus_change", f"志愿巴士{visit.community.name}安排变更", now,
             change=f"{'、'.join(what)}有变：{visit.note}")
    return visit


def cancel(session: Session, visit: BusVisit, *, now: datetime, reason: str = "") -> BusVisit:
    if visit.state != "scheduled":
        raise BusError("这次到访已经取消了。")
    _cancel_reminders(session, visit)
    visit.state = "cancelled"
    visit.change_no += 1
    visit.note = (reason.strip() or "因故取消")[:200]
    visit.updated_at = now
    session.flush()
    announce(session, visit, "bus_cancel", f"志愿巴士{visit.community.name}到访取消", now, reason=visit.note)
    return visit


def batch_id(visit: BusVisit) -> str:
    return f"bus-{visit.id}-{visit.change_no}"


def subscriber_openids(session: Session, community_id: int) -> list[str]:
    return list(session.scalars(
        select(Follower.openid).join(BusSubscription, BusSubscription.follower_id == Follower.id)
        .where(BusSubscription.community_id == community_id, Follower.subscribed.is_(True),
               Follower.push_blocked.is_(None))
        .order_by(Follower.id)))


def announce(session: Session, visit: BusVisit, kind: str, title: str, now: datetime, **extra: str) -> int:
    """One push per subscriber for this announcement, and (unless cancelled) a reminder
    due the evening before. Returns how many announcement pushes were recorded."""
    openids = subscriber_openids(session, visit.community_id)
    fields = {"community": visit.community.name, "time": when_text(visit), "place": visit.place}
    if kind != "bus_cancel":
        fields["services"] = service_names(visit.services)
    fields.update(extra)
    batch = batch_id(visit)
    count = notify_many(session, [dict(openid=o, kind=kind, title=title, fields=fields, batch=batch,
                                       dedup_key=f"bus:{visit.id}:{visit.change_no}:{kind}:{o}") for o in openids])
    remind_at = datetime.combine(visit.starts_at.astimezone(CHINA).date() - timedelta(days=1), REMINDER_AT,
                                 tzinfo=CHINA)
    if kind != "bus_cancel" and remind_at > now:
        reminder = {k: v for k, v in fields.items() if k != "change"}
        notify_many(session, [dict(openid=o, kind="bus_reminder", title=f"明天志愿巴士到{visit.community.name}",
                                   fields=reminder, batch=f"{batch}-reminder", due_at=remind_at,
                                   dedup_key=f"bus:{visit.id}:{visit.change_no}:bus_reminder:{o}") for o in openids])
    return count


def _cancel_reminders(session: Session, visit: BusVisit) -> None:
    """The reminder of the previous announcement must not go out any more."""
    withdraw(session, Push.batch == f"{batch_id(visit)}-reminder", reason="visit changed or cancelled")
