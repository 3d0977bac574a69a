"""Dispatch: who is asked to take an order, offers and answers, hand assignment, the
service itself, the resident's confirmation, and hours and time-bank payment after it.

Ranking (`rank`) — every active volunteer whose skills include the order's category gets a
score and the reasons a coordinator reads (README "Dispatch" documents the table):

    same community +40 | else same street +20 | else within 1/3/5 km +15/+10/+5
    free in the requested slot +20 | no availability given +5
    each open assignment (accepted or in service) −15
    each decline or unanswered offer in the last 30 days −5 (at most −20)
    fairness: +1 per day since the last accepted order, at most +10 (never: +10)

Ties go to the lower volunteer id. The resident themself is never a candidate; volunteers
who cannot be reached in chat, or were already asked for this order, are listed (for a
coordinator) but not offered it automatically.

Life of an order here: `offer_next` asks the best candidate not yet asked (push with the
community only, never the address); `accept` / `decline` answer; an unanswered offer expires
at `due_at` and `run_due` (the scheduler's due-work pass) offers it to the next one; with
nobody left the order is escalated to the coordinators of the resident's community.
`assign` is a coordinator's hand-picked offer (a reassignment withdraws the previous one and
tells that volunteer). `start_service` / `complete_service` (minutes claimed, capped at
`cap_factor` × the sub-category's typical duration unless a coordinator approves more with
`approve_claimed_minutes`), then `confirm` by the resident, or by `run_due` after
`confirm_hours`: a pending hour record (source "order") and, for an order paid with time,
the debit. Order states change only through `rules.orders.transition`.

Two volunteers accepting at once (a late answer to an expired offer and the next
volunteer's): `accept` locks the order row first, so exactly one wins; the other is told.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import String, cast, func, select, update
from sqlalchemy.orm import Session, selectinload

from rules import callouts, timebank, unmet, volunteering
from rules import orders as order_rules
from rules.orders import CHINA, SLOTS, SYSTEM, Actor, OrderError, distance_m
from store.dead_letters import drain
from store.models import (
    Community,
    Coordinator,
    Follower,
    HourRecord,
    Offer,
    Order,
    Team,
    TimeAccount,
    TimePayment,
    Volunteer,
)
from store.models.dispatch import OFFER_STATES
from store.outbox import notify

log = logging.getLogger("volbot.dispatch")

# ---- scoring (documented in README "Dispatch"; tests/test_dispatch_ranking.py pins it) ------
SAME_COMMUNITY = 40
SAME_STREET = 20
NEAR = ((1000, 15), (3000, 10), (5000, 5))  # (within metres, points)
AVAILABLE = 20
AVAILABILITY_UNKNOWN = 5
OPEN_ASSIGNMENT = -15
RECENT_DECLINE = -5
RECENT_DECLINE_FLOOR = -20
RECENT_DAYS = 30
FAIRNESS_PER_DAY = 1
FAIRNESS_MAX = 10

OPEN_ORDER = ("accepted", "in_service")  # an accepted offer whose order is in these is "open"
ASSIGNABLE = ("submitted", "offered", "accepted", "escalated")
ACCEPTING = ("submitted", "offered", "escalated")  # order states an offer may still be taken in


class DispatchError(OrderError):
    """A refused dispatch step; `message` is fit to show in chat (an `OrderError`, so a
    journey catching the order rules' refusals catches these too)."""


@dataclass(frozen=True)
class Settings:
    """Tunables, configured in bot/config.py (DISPATCH_OFFER_MINUTES, DISPATCH_CONFIRM_HOURS,
    DISPATCH_CAP_FACTOR: minutes credited without approval, × the typical duration). The
    shell passes the configured ones; these defaults are the same values, for tests."""

    offer_minutes: int = 30
    confirm_hours: int = 48
    cap_factor: int = 2



@dataclass
class Candidate:
    volunteer: Volunteer
    score: int
    reasons: list[str] = field(default_factory=list)
    offerable: bool = True  # may be offered automatically
    note: str = ""  # why not, when not


# ---- ranking --------------------------------------------------------------------------------

def _order_place(order: Order) -> tuple[float | None, float | None]:
    if order.lat is not None and order.lng is not None:
        return order.lat, order.lng
    if order.community is not None:
        return order.community.lat, order.community.lng
    return None, None


def _slot_codes(order: Order) -> tuple[str, ...]:
    """Availability codes (volunteers.yaml) that cover the order's requested slot."""
    kind = "weekday" if order.preferred_date.weekday() < 5 else "weekend"
    parts = ("am", "pm", "eve") if order.preferred_slot == "day" else (order.preferred_slot,)
    return tuple(f"{kind}_{p}" for p in parts)


def _area(order: Order, team: Team, community: Community | None) -> tuple[int, str | None]:
    if order.community_id is not None and community is not None and community.id == order.community_id:
        return SAME_COMMUNITY, f"同社区（{community.name}）+{SAME_COMMUNITY}"
    order_street = order.community.street if order.community is not None else ""
    vol_street = team.street or (community.street if community is not None else "")
    if order_street and vol_street == order_street:
        return SAME_STREET, f"同街道（{order_street}）+{SAME_STREET}"
    lat, lng = _order_place(order)
    if lat is not None and community is not None and community.lat is not None:
        metres = distance_m(lat, lng, community.lat, community.lng)
        for within, points in NEAR:
            if metres <= within:
                return points, f"距离约{metres / 1000:.1f}公里 +{points}"
        return 0, f"距离约{metres / 1000:.1f}公里"
    return 0, None


def _volunteer_stats(session: Session, ids: list[int], now: datetime) -> tuple[dict, dict, dict]:
    """(open assignments, recent declines, last accepted at) per volunteer id, 3 queries."""
    if not ids:
        return {}, {}, {}
    open_ = dict(session.execute(
        select(Offer.volunteer_id, func.count()).join(Order, Order.id == Offer.order_id)
        .where(Offer.volunteer_id.in_(ids), Offer.state == "accepted", Order.status.in_(OPEN_ORDER))
        .group_by(Offer.volunteer_id)).all())
    declines = dict(session.execute(
        select(Offer.volunteer_id, func.count())
        .where(Offer.volunteer_id.in_(ids), Offer.state.in_(("declined", "expired")),
               Offer.decided_at >= now - timedelta(days=RECENT_DAYS))
        .group_by(Offer.volunteer_id)).all())
    last = dict(session.execute(
        select(Offer.volunteer_id, func.max(Offer.decided_at))
        .where(Offer.volunteer_id.in_(ids), Offer.state == "accepted").group_by(Offer.volunteer_id)).all())
    return open_, declines, last


def score(order: Order, volunteer: Volunteer, *, open_count: int, recent_declines: int,
          last_accepted: datetime | None, now: datetime) -> tuple[int, list[str]]:
    """The documented scoring of one volunteer for one order: (score, reasons)."""
    team = volunteer.team
    community = team.community
    total, reasons = 0, [f"具备“{order.category_name}”技能"]
    points, why = _area(order, team, community)
    total += points
    if why:
        reasons.append(why)
    slots = _slot_codes(order)
    label = f"{'工作日' if slots[0].startswith('weekday') else '周末'}{SLOTS.get(order.preferred_slot, '')}"
    if not volunteer.availability:
        total += AVAILABILITY_UNKNOWN
        reasons.append(f"未填写可服务时间 +{AVAILABILITY_UNKNOWN}")
    elif any(code in volunteer.availability for code in slots):
        total += AVAILABLE
        reasons.append(f"{label}有空 +{AVAILABLE}")
    else:
        reasons.append(f"{label}不在可服务时间")
    if open_count:
        total += OPEN_ASSIGNMENT * open_count
        reasons.append(f"手头有{open_count}单未完成 {OPEN_ASSIGNMENT * open_count}")
    if recent_declines:
        points = max(RECENT_DECLINE * recent_declines, RECENT_DECLINE_FLOOR)
        total += points
        reasons.append(f"近{RECENT_DAYS}天婉拒或未回复{recent_declines}次 {points}")
    if last_accepted is None:
        total += FAIRNESS_MAX
        reasons.append(f"还没有接过单 +{FAIRNESS_MAX}")
    else:
        days = max(0, (now - last_accepted).days)
        points = min(FAIRNESS_MAX, days * FAIRNESS_PER_DAY)
        total += points
        reasons.append(f"距上次接单{days}天 +{points}")
    return total, reasons


def rank(session: Session, order: Order, now: datetime, volunteers: list[Volunteer] | None = None) -> list[Candidate]:
    """Candidates for `order`, best first. `volunteers` narrows the pool (e.g. to a
    coordinator's subtree); by default every active volunteer with the skill."""
    if volunteers is None:
        volunteers = list(session.scalars(select(Volunteer).where(
            Volunteer.state == "active",
            cast(Volunteer.skills, String).like(f'%"{order.category_code}"%'))
            # scoring reads each one's team, community and follower: load them in 3 queries, not 3 per volunteer
            .options(selectinload(Volunteer.team).selectinload(Team.community), selectinload(Volunteer.follower))))
    pool = [v for v in volunteers if v.state == "active" and order.category_code in (v.skills or [])
            and not (order.follower_id is not None and v.follower_id == order.follower_id)]
    ids = [v.id for v in pool]
    open_, declines, last = _volunteer_stats(session, ids, now)
    asked = set(session.scalars(select(Offer.volunteer_id).where(Offer.order_id == order.id,
                                                                   Offer.volunteer_id.in_(ids)))) if ids else set()
    out = []
    for v in pool:
        total, reasons = score(order, v, open_count=open_.get(v.id, 0), recent_declines=declines.get(v.id, 0),
                               last_accepted=last.get(v.id), now=now)
        c = Candidate(v, total, reasons)
        if v.follower is None or not v.follower.subscribed:
            c.offerable, c.note = False, "未关注公众号，无法推送"
        elif v.id in asked:
            c.offerable, c.note = False, "本单已联系过"
        out.append(c)
    out.sort(key=lambda c: (-c.score, c.volunteer.id))
    return out


# ---- offers -------------------------------------------------------------------------------

def _when(order: Order) -> str:
    if order.preferred_at is not None:
        return f"{order.preferred_at.astimezone(CHINA):%m月%d日 %H:%M}"
    return f"{order.preferred_date:%m月%d日} {SLOTS.get(order.preferred_slot, '')}"


def _area_name(order: Order) -> str:
    return order.community.name if order.community is not None else "社区待确认"


def _push_offer(session: Session, offer: Offer, order: Order, settings: Settings) -> None:
    follower = offer.volunteer.follower
    if follower is None or not follower.subscribed:
        return
    head = "工作人员指派，" if offer.assigned_by else ""
    notify(session, openid=follower.openid, kind="order_offer", title="新的服务工单",
           fields={"订单号": order.number, "服务项目": order.sub_name, "时间": _when(order),
                   "备注": f"{_area_name(order)}，{head}回复接单或不接"},
           dedup_key=f"dispatch:offer:{offer.id}")


def _make_offer(session: Session, order: Order, cand: Candidate, now: datetime, settings: Settings,
                coordinator: Coordinator | None = None, note: str | None = None) -> Offer:
    offer = Offer(order_id=order.id, volunteer_id=cand.volunteer.id, state="offered", offered_at=now,
                  due_at=now + timedelta(minutes=settings.offer_minutes), score=cand.score,
                  reasons=list(cand.reasons), assigned_by=coordinator.id if coordinator else None,
                  note=(note or None) and note[:255], created_at=now)
    session.add(offer)
    session.flush()
    _push_offer(session, offer, order, settings)
    return offer


def live_offer(session: Session, order: Order) -> Offer | None:
    return session.scalar(select(Offer).where(Offer.order_id == order.id, Offer.state == "offered")
                          .order_by(Offer.id.desc()).limit(1))


def accepted_offer(session: Session, order: Order) -> Offer | None:
    return session.scalar(select(Offer).where(Offer.order_id == order.id, Offer.state == "accepted")
                          .order_by(Offer.id.desc()).limit(1))


def offer_next(session: Session, order: Order, now: datetime, settings: Settings | None = None, *,
               escalate: bool = True, actor: Actor = SYSTEM) -> Offer | None:
    """Ask the best candidate not asked yet. Nobody left: escalate (unless `escalate` is
    False, as when an order is just placed: the scheduler's pass escalates it then)."""
    settings = settings or Settings()
    _lock(session, order)
    if order.status not in ACCEPTING or live_offer(session, order) or accepted_offer(session, order):
        return None
    best = next((c for c in rank(session, order, now) if c.offerable), None)
    if best is None:
        if escalate and order.status != "escalated":
            _escalate(session, order, now, actor)
        return None
    if order.status != "offered":
        order_rules.transition(session, order, "offered", actor=actor, now=now,
                               reason=f"联系志愿者 {best.volunteer.number}")
    return _make_offer(session, order, best, now, settings)


def coordinators_for(session: Session, order: Order) -> list[Coordinator]:
    """Coordinators (reachable in chat) of the resident's community team and the teams above
    it; without a community team, those of the top of the tree."""
    found: dict[int, Coordinator] = {}
    if order.community_id is not None:
        for team in session.scalars(select(Team).where(Team.community_id == order.community_id)):
            for c in volunteering.coordinators_over(session, team):
                found[c.id] = c
    if not found:
        roots = select(Team.id).where(Team.parent_id.is_(None))
        for c in session.scalars(select(Coordinator).where(
                Coordinator.team_id.in_(roots), Coordinator.active.is_(True), Coordinator.follower_id.is_not(None))):
            found[c.id] = c
    return sorted(found.values(), key=lambda c: c.id)


def _escalate(session: Session, order: Order, now: datetime, actor: Actor) -> None:
    event = order_rules.transition(session, order, "escalated", actor=actor, now=now, reason="暂无志愿者接单")
    unmet.record(session, kind="no_volunteer", text=order.sub_name, now=now, community_id=order.community_id,
                 sub_code=order.sub_code)
    for coord in coordinators_for(session, order):
        notify(session, openid=coord.follower.openid, kind="order_offer", title="工单无人接单，请派单",
               fields={"订单号": order.number, "服务项目": order.sub_name, "时间": _when(order),
                       "备注": f"{_area_name(order)}，回复派单 {order.number}"},
               dedup_key=f"dispatch:escalate:{event.id}:{coord.id}")
    # Nobody left to ask one by one: a call-out to the free volunteers who opted in to them;
    # the first to answer 报名 takes it (`take`).
    callouts.send_order_callout(session, order.id, now)


def _lock(session: Session, order: Order) -> None:
    """Take the order's row lock (pending changes written first). Every dispatch step takes
    it before touching offers, always in that order, so concurrent steps queue, never deadlock."""
    session.flush()
    session.refresh(order, with_for_update=True)


def _offer_of(session: Session, volunteer: Volunteer, order: Order, states: tuple[str, ...]) -> Offer | None:
    return session.scalar(select(Offer).where(Offer.order_id == order.id, Offer.volunteer_id == volunteer.id,
                                              Offer.state.in_(states)).order_by(Offer.id.desc()).limit(1))


def _decide(session: Session, offer: Offer, from_states: tuple[str, ...], to: str, now: datetime,
            note: str | None = None) -> bool:
    """Move an offer if it is still in `from_states` (one conditional UPDATE: only one wins)."""
    values = {"state": to, "decided_at": now}
    if note:
        values["note"] = note[:255]
    won = session.execute(update(Offer).where(Offer.id == offer.id, Offer.state.in_(from_states)).values(**values)
                          .execution_options(synchronize_session=False)).rowcount == 1
    session.refresh(offer)
    return won


def accept(session: Session, volunteer: Volunteer, order: Order, now: datetime) -> Offer:
    """Take the order. An offer that timed out may still be taken while nobody else has."""
    _lock(session, order)  # two acceptances queue here; the second sees the first
    offer = _offer_of(session, volunteer, order, OFFER_STATES)
    if offer is None:
        raise DispatchError(f"没有找到派给您的工单 {order.number}。回复“我的任务”查看。")
    if offer.state == "accepted":
        raise DispatchError(f"您已经接了工单 {order.number}，无需重复回复。")
    if order.status in ("cancelled", "expired"):
        raise DispatchError(f"工单 {order.number} 已经取消了，谢谢您。")
    taken = accepted_offer(session, order)
    if order.status not in ACCEPTING or taken is not None:
        if offer.state == "offered":
            _decide(session, offer, ("offered",), "withdrawn", now, "已由其他志愿者接单")
        raise DispatchError(f"谢谢您！工单 {order.number} 已经有其他志愿者接了，这次不用麻烦您了。")
    if offer.state == "declined":
        raise DispatchError(f"您已婉拒工单 {order.number}。")
    if offer.state == "withdrawn":
        raise DispatchError(f"工单 {order.number} 已由协调员另行安排，谢谢您。")
    if not _decide(session, offer, ("offered", "expired"), "accepted", now):
        raise DispatchError(f"工单 {order.number} 的派单已经结束，谢谢您。")
    for other in session.scalars(select(Offer).where(Offer.order_id == order.id, Offer.state == "offered")):
        _decide(session, other, ("offered",), "withdrawn", now, "已由其他志愿者接单")
    order_rules.transition(session, order, "accepted", actor=Actor("volunteer", volunteer.id), now=now,
                           reason=f"志愿者 {volunteer.name[:1]}** 接单")
    return offer


def take(session: Session, volunteer: Volunteer, order: Order, now: datetime) -> Offer:
    """A volunteer answering a call-out (rules.callouts) takes the order: an offer made
    and accepted at once, by the same rules as any acceptance (the first one wins)."""
    _lock(session, order)
    if volunteer.state != "active":
        raise DispatchError("您的志愿者身份当前不能接单。")
    if order.status not in ACCEPTING or accepted_offer(session, order) is not None:
        raise DispatchError(f"谢谢您！工单 {order.number} 已经有人接了或已结束，这次不用麻烦您了。")
    if order.follower_id is not None and volunteer.follower_id == order.follower_id:
        raise DispatchError("不能接自己下的工单。")
    offer = _offer_of(session, volunteer, order, ("offered",))
    if offer is None:
        offer = Offer(order_id=order.id, volunteer_id=volunteer.id, state="offered", offered_at=now, due_at=now,
                      score=0, reasons=["召集报名"], note="召集报名", created_at=now)
        session.add(offer)
        session.flush()
    if order.status != "offered":
        order_rules.transition(session, order, "offered", actor=SYSTEM, now=now,
                               reason=f"召集：志愿者 {volunteer.number} 报名")
    return accept(session, volunteer, order, now)


def decline(session: Session, volunteer: Volunteer, order: Order, now: datetime, reason: str = "",
            settings: Settings | None = None) -> Offer | None:
    """Say no to a live offer; the next candidate is asked at once. Returns the next offer."""
    _lock(session, order)
    offer = _offer_of(session, volunteer, order, ("offered",))
    if offer is None or not _decide(session, offer, ("offered",), "declined", now, reason or "婉拒"):
        raise DispatchError(f"没有待您答复的工单 {order.number}。")
    return offer_next(session, order, now, settings)


def expire(session: Session, offer_id: int, now: datetime, settings: Settings | None = None) -> bool:
    """An unanswered offer past its due time: expired, and the order goes to the next one."""
    offer = session.get(Offer, offer_id)
    if offer is None or offer.due_at is None or offer.due_at > now:
        return False
    _lock(session, offer.order)
    if not _decide(session, offer, ("offered",), "expired", now, "超时未回复"):
        return False
    offer_next(session, offer.order, now, settings)
    return True


def assign(session: Session, order: Order, volunteer: Volunteer, now: datetime, *,
           coordinator: Coordinator | None, reason: str = "", settings: Settings | None = None) -> Offer:
    """A coordinator's pick (None = an operator at the CLI): offered to `volunteer`, who
    answers like any offer. A reassignment withdraws the current offer or acceptance and
    tells that volunteer."""
    settings = settings or Settings()
    if coordinator is not None and not volunteering.can_act(coordinator, volunteer.team):
        raise DispatchError("这名志愿者不在您管理的队伍范围内。")
    if volunteer.state != "active":
        raise DispatchError(f"志愿者 {volunteer.number} 不是在册状态，不能派单。")
    _lock(session, order)
    if order.status not in ASSIGNABLE:
        raise DispatchError(f"订单{order.number}当前{order_rules.STATES[order.status]}，不能派单。")
    actor = Actor("coordinator", coordinator.id) if coordinator else Actor("coordinator")
    current = accepted_offer(session, order) or live_offer(session, order)
    if current is not None and current.volunteer_id == volunteer.id:
        raise DispatchError(f"工单 {order.number} 已经派给 {volunteer.name}，无需重复派单。")
    why = reason.strip()[:100] or ("改派" if current else "协调员派单")
    for other in session.scalars(select(Offer).where(Offer.order_id == order.id,
                                                     Offer.state.in_(("offered", "accepted")))):
        was_accepted = other.state == "accepted"
        _decide(session, other, ("offered", "accepted"), "withdrawn", now, f"改派：{why}")
        if was_accepted:
            _tell_volunteer(session, other, "工单已改派", "协调员已改派，无需上门", now)
    if order.status == "accepted":
        order_rules.transition(session, order, "submitted", actor=actor, now=now, reason=why)
    if order.status != "offered":
        order_rules.transition(session, order, "offered", actor=actor, now=now,
                               reason=f"指派志愿者 {volunteer.number}")
    ranked = {c.volunteer.id: c for c in rank(session, order, now, [volunteer])}
    cand = ranked.get(volunteer.id) or Candidate(volunteer, 0, ["协调员指定（不具备该类技能）"])
    return _make_offer(session, order, cand, now, settings, coordinator, note=why)


def _tell_volunteer(session: Session, offer: Offer, title: str, note: str, now: datetime) -> None:
    follower = offer.volunteer.follower
    if follower is None or not follower.subscribed:
        return
    order = offer.order
    notify(session, openid=follower.openid, kind="order_update", title=title,
           fields={"订单号": order.number, "服务项目": order.sub_name,
                   "状态": order_rules.SHORT_STATES[order.status] if order.status in order_rules.SHORT_STATES else "",
                   "时间": f"{now.astimezone(CHINA):%Y年%m月%d日 %H:%M}", "备注": note[:20]},
           dedup_key=f"dispatch:tell:{offer.id}:{title}")


# ---- the service --------------------------------------------------------------------------

def _mine(session: Session, volunteer: Volunteer, order: Order) -> Offer:
    offer = _offer_of(session, volunteer, order, ("accepted",))
    if offer is None:
        raise DispatchError(f"工单 {order.number} 不是您接的单。回复“我的任务”查看您的工单。")
    return offer


def start_service(session: Session, volunteer: Volunteer, order: Order, now: datetime) -> Offer:
    offer = _mine(session, volunteer, order)
    try:
        order_rules.transition(session, order, "in_service", actor=Actor("volunteer", volunteer.id), now=now,
                               reason="志愿者开始服务")
    except OrderError as e:
        raise DispatchError(e.message) from None
    offer.started_at = now
    return offer


def minutes_cap(order: Order, settings: Settings) -> int:
    return order.minutes * settings.cap_factor


def complete_service(session: Session, volunteer: Volunteer, order: Order, minutes: int, now: datetime,
                     settings: Settings | None = None) -> Offer:
    """Record the service done: the minutes claimed, credited up to the cap; the resident
    is asked to confirm (and confirmed automatically after `confirm_hours`)."""
    settings = settings or Settings()
    offer = _mine(session, volunteer, order)
    if not 1 <= minutes <= 24 * 60:
        raise DispatchError("服务时长请填写 1-1440 分钟。")
    if order.status == "accepted":  # 开始服务 forgotten: the service is taken as started now
        start_service(session, volunteer, order, now)
        offer.started_at = now - timedelta(minutes=minutes)
    try:
        order_rules.transition(session, order, "completed", actor=Actor("volunteer", volunteer.id), now=now,
                               reason="请回复“确认完成”并评价")
    except OrderError as e:
        raise DispatchError(e.message) from None
    cap = minutes_cap(order, settings)
    offer.claimed_minutes = minutes
    offer.minutes = min(minutes, cap)
    offer.minutes_cap = cap
    offer.finished_at = now
    offer.started_at = offer.started_at or now - timedelta(minutes=minutes)
    offer.confirm_due_at = now + timedelta(hours=settings.confirm_hours)
    return offer


def confirm(session: Session, order: Order, *, actor: Actor, now: datetime, reason: str = "居民确认完成") -> HourRecord | None:
    """The resident (or the clock) confirms a completed order: a pending hour record for the
    volunteer, and the time-bank debit for an order paid with time. Returns the record."""
    try:
        order_rules.transition(session, order, "confirmed", actor=actor, now=now, reason=reason)
    except OrderError as e:
        raise DispatchError(e.message) from None
    offer = accepted_offer(session, order)
    record = None
    if offer is not None and offer.minutes:
        record = _record_hours(session, offer, offer.minutes, now, suffix="")
        offer.hour_record_id = record.id
        _tell_volunteer(session, offer, "服务已确认", f"{offer.minutes}分钟待审核", now)
    _debit(session, order, now)
    return record


def _record_hours(session: Session, offer: Offer, minutes: int, now: datetime, suffix: str) -> HourRecord:
    end = offer.finished_at or now
    start = min(offer.started_at or end, end - timedelta(minutes=minutes))
    flag = None
    if offer.claimed_minutes and offer.claimed_minutes > minutes:
        flag = f"申报{offer.claimed_minutes}分钟，超出上限{minutes}分钟"
    order = offer.order
    return volunteering.record_hours(
        session, offer.volunteer, source="order", source_ref=f"order:{order.number}{suffix}",
        started_at=start, ended_at=end, minutes=minutes, now=max(now, end),
        description=f"{order.sub_name}（订单{order.number}）", flagged=flag)


def approve_claimed_minutes(session: Session, order: Order, now: datetime, *,
                            coordinator: Coordinator | None) -> int:
    """A coordinator approves the full claim above the cap. Before confirmation the claim is
    simply credited; after it, the capped pending record is rejected and a new one for the
    claim recorded (hour records are never edited). Returns the minutes now credited."""
    offer = accepted_offer(session, order)
    if offer is None or not offer.claimed_minutes:
        raise DispatchError(f"工单 {order.number} 还没有申报服务时长。")
    if coordinator is not None and not volunteering.can_act(coordinator, offer.volunteer.team):
        raise DispatchError("这名志愿者不在您管理的队伍范围内。")
    if offer.claimed_minutes <= (offer.minutes or 0):
        return offer.minutes or 0
    if offer.hour_record_id is None:
        offer.minutes = offer.claimed_minutes
        return offer.minutes
    old = session.get(HourRecord, offer.hour_record_id)
    if old.state != "pending":
        raise DispatchError("这条时长记录已经审核过了，请补录时长。")
    volunteering.decide_hours(session, [old.id], approve=False, now=now, coordinator=coordinator,
                              reason=f"协调员核准申报的{offer.claimed_minutes}分钟，另记一条")
    offer.minutes = offer.claimed_minutes
    record = _record_hours(session, offer, offer.minutes, now, suffix=":approved")
    offer.hour_record_id = record.id
    return offer.minutes


# ---- cancelling ---------------------------------------------------------------------------

def cancel(session: Session, order: Order, *, actor: Actor, reason: str, now: datetime):
    """Cancel through the order rules; a volunteer who had accepted is told, open offers end
    and a time payment not yet taken is dropped."""
    _lock(session, order)
    told = [o for o in session.scalars(select(Offer).where(Offer.order_id == order.id,
                                                           Offer.state.in_(("offered", "accepted"))))]
    event = order_rules.cancel_order(session, order, actor=actor, reason=reason, now=now)
    for offer in told:
        was_accepted = offer.state == "accepted"
        _decide(session, offer, ("offered", "accepted"), "withdrawn", now, "订单已取消")
        if was_accepted:
            who = "居民" if actor.kind == "resident" else "工作人员"
            _tell_volunteer(session, offer, "服务订单已取消", f"{who}已取消，无需上门", now)
    session.execute(update(TimePayment).where(TimePayment.order_id == order.id, TimePayment.state == "pending")
                    .values(state="cancelled", decided_at=now).execution_options(synchronize_session=False))
    return event


# ---- paying with time ---------------------------------------------------------------------

def payable_accounts(session: Session, follower: Follower) -> list[tuple[TimeAccount, str, int]]:
    """Time-bank accounts this follower may pay their own orders from, with minutes in
    them: (account, whose in words, balance), their own first (`rules.timebank`)."""
    return timebank.payable_accounts(session, follower)


def pay_with_time(session: Session, order: Order, account: TimeAccount | Volunteer, follower: Follower,
                  now: datetime) -> TimePayment:
    """Plan paying `order` (its typical duration) from a time-bank account (a volunteer's
    own, a linked volunteer's, or the resident's): refused now if the payer may not spend
    it or the balance is short; debited on confirmation."""
    if isinstance(account, Volunteer):
        account = timebank.account_for(session, account, lock=False)
    if not timebank.may_spend(session, account, follower):
        raise DispatchError("只有志愿者本人或其绑定的家人可以使用时间银行。")
    if account.balance < order.minutes:
        raise DispatchError(f"时间银行余额不足：需要{volunteering.hours_text(order.minutes)}，"
                            f"余额{volunteering.hours_text(account.balance)}。")
    payment = TimePayment(order_id=order.id, account_id=account.id, volunteer_id=account.volunteer_id,
                          payer_follower_id=follower.id, minutes=order.minutes, state="pending", created_at=now)
    session.add(payment)
    session.flush()
    return payment


def _debit(session: Session, order: Order, now: datetime) -> None:
    payment = session.scalar(select(TimePayment).where(TimePayment.order_id == order.id,
                                                       TimePayment.state == "pending"))
    if payment is None:
        return
    account = (session.get(TimeAccount, payment.account_id) if payment.account_id is not None
               else timebank.account_for(session, session.get(Volunteer, payment.volunteer_id), lock=False))
    payer = session.get(Follower, payment.payer_follower_id) if payment.payer_follower_id else None
    try:
        with session.begin_nested():
            tx = timebank.spend_for_order(session, account, payment.minutes, order_ref=order.number,
                                          payer=payer, now=now)
    except timebank.TimeBankError as e:
        # Spent elsewhere since ordering: the service was still given; staff settle it.
        payment.state, payment.note, payment.decided_at = "failed", str(e)[:255], now
        return
    payment.state, payment.tx_id, payment.decided_at = "paid", tx.id if tx else None, now


def payment_of(session: Session, order: Order) -> TimePayment | None:
    return session.scalar(select(TimePayment).where(TimePayment.order_id == order.id))


# ---- reading ------------------------------------------------------------------------------

def open_offers(session: Session, volunteer: Volunteer) -> list[Offer]:
    """Offers waiting for this volunteer's answer, oldest first."""
    return list(session.scalars(select(Offer).where(Offer.volunteer_id == volunteer.id, Offer.state == "offered")
                                .order_by(Offer.id)))


def tasks(session: Session, volunteer: Volunteer, limit: int = 8) -> list[Offer]:
    """我的任务: offers waiting, then accepted orders (open first), newest first."""
    rows = list(session.scalars(select(Offer).join(Order, Order.id == Offer.order_id)
                                .where(Offer.volunteer_id == volunteer.id, Offer.state.in_(("offered", "accepted")))
                                .order_by(Offer.id.desc()).limit(limit * 2)))
    rows.sort(key=lambda o: (o.state != "offered", o.order.status not in OPEN_ORDER, -o.id))
    return rows[:limit]


def order_by_number(session: Session, number: str) -> Order | None:
    return session.scalar(select(Order).where(Order.number == number))


# ---- the scheduler's due work --------------------------------------------------------------

def _due_ids(services, stmt) -> list[int]:
    with services.db.transaction() as session:
        if not services.db.is_sqlite:
            stmt = stmt.with_for_update(skip_locked=True)
        return list(session.scalars(stmt.limit(500)))


def run_due(services, settings: Settings | None = None) -> int:
    """Called by the scheduler each pass: expire unanswered offers (the next candidate is
    asked), confirm orders left unconfirmed past the deadline, and offer (or escalate)
    orders still waiting with nobody asked. Each item in its own transaction, and one that
    fails is set aside (store.dead_letters) so the others are still handled; every step is
    a conditional change, so two schedulers never do one twice. Returns items handled."""
    settings = settings or services.dispatch_settings
    now = services.clock.now()

    def confirm_one(session, oid):
        order = session.get(Order, oid)
        if order.status != "completed":
            return 0
        confirm(session, order, actor=SYSTEM, now=now, reason=f"{settings.confirm_hours}小时未确认，自动确认")
        return 1

    def offer_one(session, oid):
        order = session.get(Order, oid)
        before = order.status
        offer_next(session, order, now, settings)
        return order.status != before or live_offer(session, order) is not None

    steps = [
        ("offer-expiry", select(Offer.id).where(Offer.state == "offered", Offer.due_at <= now).order_by(Offer.due_at),
         lambda session, oid: expire(session, oid, now, settings)),
        ("order-confirm", select(Offer.order_id).join(Order, Order.id == Offer.order_id)
         .where(Offer.state == "accepted", Offer.confirm_due_at <= now, Order.status == "completed"), confirm_one),
        ("order-offer", select(Order.id).where(
            Order.status == "submitted",
            ~Order.id.in_(select(Offer.order_id).where(Offer.state.in_(("offered", "accepted"))))).order_by(Order.id),
         offer_one),
    ]
    done = 0
    for queue, due, apply in steps:
        result = drain(services, queue, _due_ids(services, due), apply, key=lambda oid: f"id:{oid}", show=str)
        done += result.applied
        if result.error is not None:
            raise result.error
    return done
