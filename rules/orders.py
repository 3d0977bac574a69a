"""Service orders: the one place for their states, numbers and rules.

States (`STATES`) and the moves between them (`TRANSITIONS`) are defined here and every
change goes through `transition()`, which checks the move, records an `OrderEvent` (time,
actor, reason), stamps the order and, when someone other than the resident moved it, records
a push to the resident. Residents create, cancel and rate; dispatch (offer, accept, start,
complete) plugs into the same function.

Order numbers are `D` + the local (Asia/Shanghai) date + a 4-digit serial of that day,
taken with one atomic upsert on `order_serials`, so concurrent confirms never share one (on
PostgreSQL in its own short transaction, like a sequence: see `next_number`).
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import dataclass
from datetime import date, datetime, timezone
from zoneinfo import ZoneInfo

from sqlalchemy import Float, Integer, bindparam, or_, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from menus.catalog import Catalog, Sub, from_dict, load
from rules import timebank_family as family
from store.models import CatalogVersion, Community, Follower, Order, OrderEvent, OrderSerial
from store.outbox import notify

CHINA = ZoneInfo("Asia/Shanghai")

STATES = {
    "submitted": "已提交，等待安排",
    "offered": "正在联系志愿者",
    "accepted": "志愿者已接单",
    "in_service": "服务中",
    "completed": "服务已完成",
    "confirmed": "已确认完成",
    "rated": "已评价",
    "cancelled": "已取消",
    "expired": "已过期",
    "escalated": "工作人员处理中",
}
TRANSITIONS: dict[str, tuple[str, ...]] = {
    "submitted": ("offered", "accepted", "cancelled", "expired", "escalated"),
    # a declined or timed-out offer goes back to submitted for the next volunteer
    "offered": ("accepted", "submitted", "cancelled", "expired", "escalated"),
    "accepted": ("in_service", "submitted", "cancelled", "escalated"),
    "escalated": ("submitted", "offered", "accepted", "cancelled", "expired"),
    "in_service": ("completed", "escalated"),
    "completed": ("confirmed", "rated", "escalated"),
    "confirmed": ("rated",),
    "rated": (),
    "cancelled": (),
    "expired": (),
}
# The same in at most 5 characters: template messages show a status as a "phrase" field.
SHORT_STATES = {
    "submitted": "已提交", "offered": "派单中", "accepted": "已接单", "in_service": "服务中",
    "completed": "已完成", "confirmed": "已确认", "rated": "已评价", "cancelled": "已取消",
    "expired": "已过期", "escalated": "人工处理",
}
# Closed: nobody will act on the order any more, so an unsubscribed resident's data goes.
CLOSED = frozenset({"completed", "confirmed", "rated", "cancelled", "expired"})
CANCELLABLE = frozenset({"submitted", "offered", "accepted", "escalated"})
RATABLE = frozenset({"completed", "confirmed"})
ACTORS = ("resident", "volunteer", "coordinator", "system")
SLOTS = {"am": "上午", "pm": "下午", "eve": "晚上", "day": "全天"}


class OrderError(Exception):
    """A rule refused the change; `message` is fit to show the resident."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class Actor:
    kind: str  # one of ACTORS
    id: int | None = None

    def __post_init__(self):
        if self.kind not in ACTORS:
            raise ValueError(f"unknown actor kind {self.kind!r}")


SYSTEM = Actor("system")


# ---- the needs menu in use ----------------------------------------------------------------

# Parsed needs menus by content hash. A stored version never changes (a new import is a new
# row), so this holds immutable data only; a version is parsed the first time it is seen.
_PARSED: dict[str, Catalog] = {}
_PARSED_MAX = 8

# Which menu is in use, as this process last read it from SQL, per database: (when, menu).
# Asking SQL on every turn that shows the menu was one more statement (and often the turn's
# only one) for a row that changes a few times a year; an import in another process is
# seen here within RECHECK_SECONDS, an import in this process at once.
RECHECK_SECONDS = 1.0
_IN_USE: dict[str, tuple[float, Catalog]] = {}


def current_catalog(session: Session) -> Catalog:
    """The newest imported needs menu, or the one shipped in `menus/needs.yaml`: read from
    SQL at most once per RECHECK_SECONDS per process, kept for the transaction in
    `session.info`, parsed once per process per version."""
    menu = session.info.get("catalog")
    if menu is not None:
        return menu
    database = str(session.get_bind().engine.url)
    read = _IN_USE.get(database)
    if read is not None and time.monotonic() - read[0] < RECHECK_SECONDS:
        menu = read[1]
    else:
        menu = _catalog_in_use(session)
        _IN_USE[database] = (time.monotonic(), menu)
    session.info["catalog"] = menu
    return menu


def _catalog_in_use(session: Session, now: datetime | None = None) -> Catalog:
    row = version_in_use(session, now)
    if row is None:
        return load()  # parsed once per file content (menus.catalog.parse_text)
    menu = _PARSED.get(row.sha256)
    if menu is None:
        menu = from_dict(session.scalar(select(CatalogVersion.data).where(CatalogVersion.id == row.id)))
        if len(_PARSED) >= _PARSED_MAX:
            _PARSED.clear()
        _PARSED[row.sha256] = menu
    return menu


def catalog_at(session: Session, now: datetime) -> Catalog:
    """The needs menu in use at `now`, read from SQL (not the per-process copy)."""
    return _catalog_in_use(session, now)


def version_in_use(session: Session, now: datetime | None = None):
    """(id, sha256) of the version in use at `now` (default: the clock): the newest whose
    `effective_from` has come, NULL meaning at once. A revision published for a later date
    is so taken up at read time, within RECHECK_SECONDS, with nothing to schedule."""
    now = now or datetime.now(timezone.utc)
    return session.execute(
        select(CatalogVersion.id, CatalogVersion.sha256)
        .where(or_(CatalogVersion.effective_from.is_(None), CatalogVersion.effective_from <= now))
        .order_by(CatalogVersion.id.desc()).limit(1)
    ).first()


def forget_catalog_in_use() -> None:
    """Read the menu in use from SQL on next use (an import here, or tables emptied)."""
    _IN_USE.clear()


def import_catalog(session: Session, catalog: Catalog, source: str = "", *,
                   effective_from: datetime | None = None, published_by: int | None = None) -> CatalogVersion:
    """Make `catalog` (already checked) the needs menu in use for every process, at once or
    from `effective_from`."""
    data = catalog.to_dict()
    digest = hashlib.sha256(json.dumps(data, ensure_ascii=False, sort_keys=True).encode()).hexdigest()
    version = CatalogVersion(district=catalog.district, data=data, sha256=digest, source=source[:255],
                             effective_from=effective_from, published_by=published_by)
    session.add(version)
    session.flush()
    session.info.pop("catalog", None)  # this transaction now sees the new menu
    forget_catalog_in_use()  # and so does every later one in this process
    return version


# ---- numbers ------------------------------------------------------------------------------

def next_number(session: Session, now: datetime) -> str:
    """The next order number of the local day `now` falls in (atomic under concurrency)."""
    day = now.astimezone(CHINA).date()
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    stmt = insert(OrderSerial).values(day=day, last=1)
    stmt = stmt.on_conflict_do_update(
        index_elements=[OrderSerial.day], set_={"last": OrderSerial.last + 1}
    ).returning(OrderSerial.last)
    bind = session.get_bind()
    if dialect == "postgresql" and isinstance(bind, Engine):
        # Like a sequence: the serial is taken in its own short transaction, so the day's
        # row lock is held for one statement, not until the order's turn commits (every
        # 确认 in the district would queue behind the one before). A turn that rolls back
        # leaves a gap in the day's numbers; numbers stay unique.
        with bind.begin() as conn:
            serial = conn.execute(stmt).scalar_one()
    else:
        # SQLite has one writer at a time anyway; a session bound to a connection (an outer
        # transaction) keeps the serial in it.
        serial = session.execute(stmt).scalar_one()
    return f"D{day:%Y%m%d}-{serial:04d}"


# ---- creating -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Preferred:
    day: date
    slot: str  # am | pm | eve | day
    at: datetime | None = None  # an exact time (aware), when one was given


_ORDER_BY_FORM = select(Order).where(Order.form_token == bindparam("form_token"))


def create_order(
    session: Session,
    *,
    follower: Follower,
    sub: Sub,
    category_name: str,
    description: str,
    address: str,
    phone: str,
    preferred: Preferred,
    now: datetime,
    lat: float | None = None,
    lng: float | None = None,
    community_id: int | None = None,
    form_token: str | None = None,
) -> tuple[Order, bool]:
    """Record a new order (status submitted). Returns (order, created); a second call with
    the same `form_token` returns the first order and False."""
    if form_token:
        existing = session.scalar(_ORDER_BY_FORM, {"form_token": form_token})
        if existing is not None:
            return existing, False
    if preferred.slot not in SLOTS:
        raise ValueError(f"unknown slot {preferred.slot!r}")
    order = Order(
        number=next_number(session, now), form_token=form_token, follower_id=follower.id,
        sub_code=sub.code, sub_name=sub.name, category_code=sub.category_code,
        category_name=category_name, mode=sub.mode, minutes=sub.minutes,
        description=description, address=address, lat=lat, lng=lng, phone=phone,
        community_id=community_id, preferred_date=preferred.day, preferred_slot=preferred.slot,
        preferred_at=preferred.at, status="submitted", created_at=now, updated_at=now,
    )
    session.add(order)
    session.flush()
    session.add(OrderEvent(order_id=order.id, at=now, from_status=None, to_status="submitted",
                           actor_kind="resident", actor_id=follower.id, reason="居民提交"))
    session.flush()
    return order, True


# ---- changing state -------------------------------------------------------------------------

def can_move(status: str, to: str) -> bool:
    return to in TRANSITIONS.get(status, ())


def transition(session: Session, order: Order, to: str, *, actor: Actor, now: datetime,
               reason: str = "") -> OrderEvent:
    """Move `order` to `to` if the rules allow it; every change goes through here."""
    if to not in STATES:
        raise ValueError(f"unknown order state {to!r}")
    # Re-read under a row lock so two workers cannot both move the same order (pending
    # changes to the order, e.g. a cancel reason, are written first so they survive).
    session.flush()
    session.refresh(order, with_for_update=True)
    if not can_move(order.status, to):
        raise OrderError(f"订单{order.number}当前{STATES[order.status]}，不能改为“{STATES[to]}”。")
    event = OrderEvent(order_id=order.id, at=now, from_status=order.status, to_status=to,
                       actor_kind=actor.kind, actor_id=actor.id, reason=(reason or None) and reason[:255])
    order.status = to
    order.updated_at = now
    if to in CLOSED and order.closed_at is None:
        order.closed_at = now
    session.add(event)
    session.flush()
    if actor.kind != "resident":
        _tell_resident(session, order, event)
    if to in CLOSED and order.erase_on_close:
        erase_order(order, now)
    return event


# The moves a volunteer who linked the resident as family (and chose the notices) hears of.
FAMILY_NOTICES = ("accepted", "completed")


def _tell_resident(session: Session, order: Order, event: OrderEvent) -> None:
    follower = order.follower
    if follower is None:
        return
    when = event.at.astimezone(CHINA)
    fields = {"订单号": order.number, "服务项目": order.sub_name, "状态": SHORT_STATES[event.to_status],
              "时间": f"{when:%Y年%m月%d日 %H:%M}", "备注": (event.reason or "")[:20]}
    if follower.subscribed:
        notify(session, openid=follower.openid, kind="order_update", title="服务订单状态更新",
               fields=fields, dedup_key=f"order:{order.number}:event:{event.id}")
    if event.to_status in FAMILY_NOTICES:
        for watcher in family.watchers(session, follower.id):
            if watcher.subscribed:
                note = "可回复“确认完成”代为确认" if event.to_status == "completed" else "家人的订单"
                notify(session, openid=watcher.openid, kind="order_update", title="家人的服务订单状态更新",
                       fields={**fields, "备注": note}, dedup_key=f"order:{order.number}:event:{event.id}:fam:{watcher.id}")


def cancel_order(session: Session, order: Order, *, actor: Actor, reason: str, now: datetime) -> OrderEvent:
    if order.status not in CANCELLABLE:
        raise OrderError(f"订单{order.number}{STATES[order.status]}，已不能取消。如有问题请联系工作人员。")
    order.cancel_reason = reason[:200]
    return transition(session, order, "cancelled", actor=actor, now=now, reason=reason)


def rate_order(session: Session, order: Order, *, actor: Actor, stars: int, comment: str | None,
               now: datetime) -> OrderEvent:
    if not 1 <= stars <= 5:
        raise OrderError("评分请选择 1-5 星。")
    if order.status not in RATABLE:
        raise OrderError(f"订单{order.number}{STATES[order.status]}，服务完成后才能评价。")
    order.rating = stars
    order.rating_comment = comment or None
    order.rated_at = now
    return transition(session, order, "rated", actor=actor, now=now, reason=f"{stars}星")


# ---- reading --------------------------------------------------------------------------------

_ORDERS_OF = (select(Order).where(Order.follower_id == bindparam("follower_id"))
              .order_by(Order.created_at.desc(), Order.id.desc()).limit(bindparam("limit", type_=Integer)))


def orders_of(session: Session, follower_id: int, limit: int = 8) -> list[Order]:
    return list(session.scalars(_ORDERS_OF, {"follower_id": follower_id, "limit": limit}))


def order_of(session: Session, follower_id: int, number: str) -> Order | None:
    return session.scalar(select(Order).where(Order.number == number, Order.follower_id == follower_id))


# ---- personal data --------------------------------------------------------------------------

def erase_order(order: Order, now: datetime) -> None:
    """Remove what identifies the resident, and everything they wrote (a cancel reason is
    free text, also kept on the status change); the category, dates, status and stars stay
    for the district's statistics."""
    order.phone = None
    order.address = None
    order.lat = order.lng = None
    order.description = None
    order.rating_comment = None
    order.cancel_reason = None
    for event in order.events:
        if event.actor_kind == "resident":
            event.reason = None
    order.erase_on_close = False
    order.erased_at = now


def erase_for_follower(session: Session, follower_id: int, now: datetime) -> tuple[int, int]:
    """On unsubscribe: erase closed orders now, mark open ones to be erased when they close.
    Returns (erased, marked)."""
    erased = marked = 0
    for order in session.scalars(select(Order).where(Order.follower_id == follower_id,
                                                     Order.erased_at.is_(None))):
        if order.status in CLOSED:
            erase_order(order, now)
            erased += 1
        else:
            order.erase_on_close = True
            marked += 1
    return erased, marked


# ---- communities for an address -------------------------------------------------------------

def distance_m(lat1: float, lng1: float, lat2: float, lng2: float) -> float:
    """Great-circle distance in metres (haversine)."""
    r = 6371000.0
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lng2 - lng1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * r * math.asin(math.sqrt(a))


_DLAT, _DLNG = Community.lat - bindparam("lat", type_=Float), Community.lng - bindparam("lng", type_=Float)
_COMMUNITIES_NEAR = (
    select(Community)
    .where(Community.lat.between(bindparam("lat_lo", type_=Float), bindparam("lat_hi", type_=Float)),
           Community.lng.between(bindparam("lng_lo", type_=Float), bindparam("lng_hi", type_=Float)))
    .order_by(_DLAT * _DLAT + bindparam("squeeze", type_=Float) * _DLNG * _DLNG, Community.id)
    .limit(bindparam("limit", type_=Integer)))


def communities_near(session: Session, lat: float, lng: float, limit: int = 5,
                     within_m: float = 5000) -> list[tuple[Community, float]]:
    """The `limit` communities nearest to a point, within `within_m`, with their distances.

    SQL picks them inside a bounding box by a flat-earth distance (exact enough to rank
    places a few kilometres apart, and plain arithmetic on both SQLite and PostgreSQL), so
    only those few rows become objects; their great-circle distances are computed here."""
    box = within_m / 111000.0
    squeeze = math.cos(math.radians(lat)) ** 2  # a degree of longitude is shorter than one of latitude
    rows = session.scalars(_COMMUNITIES_NEAR, {
        "lat": lat, "lng": lng, "squeeze": squeeze, "limit": limit,
        "lat_lo": lat - box, "lat_hi": lat + box, "lng_lo": lng - box * 1.5, "lng_hi": lng + box * 1.5})
    found = [(c, distance_m(lat, lng, c.lat, c.lng)) for c in rows]
    return sorted((f for f in found if f[1] <= within_m), key=lambda f: f[1])


def communities_named(session: Session, text: str, limit: int = 8) -> list[Community]:
    """Communities whose name is in `text` or contains it ("樱园" → 樱园社区)."""
    text = text.strip()
    if not text:
        return []
    core = text.removesuffix("社区").removesuffix("小区")
    if not core:  # just "社区": every community is a candidate
        return list(session.scalars(select(Community).order_by(Community.name).limit(limit)))
    rows = list(session.scalars(select(Community).where(Community.name.contains(core[:20]))
                                .order_by(Community.name).limit(limit))) if len(core) >= 2 else []
    if not rows:
        everyone = session.scalars(select(Community).order_by(Community.name))
        rows = [c for c in everyone if c.name.removesuffix("社区") and c.name.removesuffix("社区") in text]
    return rows[:limit]


_ANY_COMMUNITY = select(Community.id).limit(1)


def has_communities(session: Session) -> bool:
    return session.scalar(_ANY_COMMUNITY) is not None

