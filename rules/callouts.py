"""Shifts at risk and call-outs (召集).

A shift in the next days with fewer signed than its `min_staff` is at risk (`at_risk`).
`send_callout` asks volunteers who opted in (接收召集 in chat) of the right team and skills
who are free then, at most one call-out per volunteer per China day (a unique constraint,
so two senders cannot both ask), through the outbox (push kind `callout`). The same
call-out serves an order nobody accepted (`send_order_callout`, called when dispatch
escalates). `answer_callout` ("报名") signs the volunteer up for the shift, or hands them the
order (`rules.dispatch.take`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from sqlalchemy import String, cast, exists, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from rules import activities as acts
from rules.teams import subtree_ids
from store.models import Follower, Order, Team, Volunteer
from store.models.activities import Activity, Shift, SignUp
from store.models.attendance import Callout, CalloutOptIn, ShiftPattern
from store.outbox import notify

CHINA = acts.CHINA
CALLOUT_KIND = "callout"  # menus/templates.yaml
CALLOUT_LIMIT = 30  # volunteers asked by one call-out
ANSWER_WINDOW = timedelta(hours=48)  # a "报名" answers a call-out sent this recently
AT_RISK_DAYS = 7
ORDER_SLOT_HOURS = 2  # an order with a time asked for blocks this long when looking for the free


def at_risk(session: Session, now: datetime, *, days: int = AT_RISK_DAYS, activity_ids=None) -> list[acts.ShiftView]:
    """Shifts starting in the next `days` with fewer signed than their minimum, soonest first.
    `activity_ids` (a select) narrows them to a coordinator's scope."""
    signed = (select(func.count()).where(SignUp.shift_id == Shift.id, SignUp.state == "signed")
              .correlate(Shift).scalar_subquery())
    query = (select(Shift).join(Shift.activity)
             .where(Activity.state == "published", Shift.min_staff.is_not(None), Shift.starts_at > now,
                    Shift.starts_at <= now + timedelta(days=days), signed < Shift.min_staff)
             .order_by(Shift.starts_at, Shift.id).limit(200))
    if activity_ids is not None:
        query = query.where(Activity.id.in_(activity_ids))
    views = [acts.ShiftView(s, 0, 0) for s in session.scalars(query)]
    counts = acts._counts(session, [v.shift.id for v in views])
    for v in views:
        v.taken, v.waiting = counts.get((v.shift.id, "signed"), 0), counts.get((v.shift.id, "waitlisted"), 0)
    return views


def opt_in(session: Session, volunteer: Volunteer, now: datetime) -> bool:
    """Agree to call-outs; False when already agreed."""
    if session.get(CalloutOptIn, volunteer.id) is not None:
        return False
    try:
        with session.begin_nested():
            session.add(CalloutOptIn(volunteer_id=volunteer.id, opted_in_at=now))
            session.flush()
    except IntegrityError:
        return False
    return True


def opt_out(session: Session, volunteer: Volunteer) -> bool:
    row = session.get(CalloutOptIn, volunteer.id)
    if row is None:
        return False
    session.delete(row)
    session.flush()
    return True


def opted_in(session: Session, volunteer: Volunteer) -> bool:
    return session.get(CalloutOptIn, volunteer.id) is not None


def slot_code(at: datetime) -> str:
    """The availability code (menus/volunteers.yaml) of a moment: weekday_am … weekend_eve."""
    local = at.astimezone(CHINA)
    part = "am" if local.hour < 12 else "pm" if local.hour < 18 else "eve"
    return f"{'weekday' if local.weekday() < 5 else 'weekend'}_{part}"


def _pool(session: Session, day: date, *, teams: list[Team] | None, skills: list[str]):
    """Active, opted-in, reachable volunteers not called out on `day`, in `teams`' subtrees,
    with one of `skills` (any when empty)."""
    query = (select(Volunteer).join(CalloutOptIn, CalloutOptIn.volunteer_id == Volunteer.id)
             .join(Follower, Follower.id == Volunteer.follower_id)
             .where(Volunteer.state == "active", Follower.subscribed.is_(True),
                    ~exists().where(Callout.volunteer_id == Volunteer.id, Callout.day == day))
             .order_by(Volunteer.id))
    if teams:
        ids = subtree_ids(session, teams[0])
        for team in teams[1:]:
            ids = ids.union(subtree_ids(session, team))
        query = query.where(Volunteer.team_id.in_(ids))
    if skills:
        query = query.where(or_(*[cast(Volunteer.skills, String).like(f'%"{code}"%') for code in skills]))
    return query


def _busy(session: Session, volunteer_id: int, start: datetime, end: datetime) -> bool:
    return session.scalar(select(SignUp.id).join(SignUp.shift).where(
        SignUp.volunteer_id == volunteer_id, SignUp.state == "signed",
        Shift.starts_at < end, Shift.ends_at > start).limit(1)) is not None


def _free(session: Session, v: Volunteer, start: datetime, end: datetime, slots: tuple[str, ...]) -> bool:
    if v.availability and not set(v.availability) & set(slots):
        return False
    return not _busy(session, v.id, start, end)


def callout_candidates(session: Session, shift: Shift, now: datetime, limit: int = CALLOUT_LIMIT) -> list[Volunteer]:
    """Who a call-out for `shift` would ask: the pattern's (else the project's) team and its
    subtree, with a wanted skill, free then, opted in, not called out today, not on it yet."""
    activity = shift.activity
    team = None
    if activity.pattern_id is not None:
        pattern = session.get(ShiftPattern, activity.pattern_id)
        team = pattern.team if pattern is not None else None
    team = team or activity.project.team
    day = now.astimezone(CHINA).date()
    on_it = select(SignUp.volunteer_id).where(SignUp.shift_id == shift.id,
                                              SignUp.state.in_(("signed", "waitlisted", "pending")))
    query = _pool(session, day, teams=[team], skills=list(activity.skills or [])).where(~Volunteer.id.in_(on_it))
    slots = (slot_code(shift.starts_at),)
    out = []
    for v in session.scalars(query.limit(limit * 5)):
        if _free(session, v, shift.starts_at, shift.ends_at, slots):
            out.append(v)
        if len(out) >= limit:
            break
    return out


def _order_window(order: Order) -> tuple[datetime, datetime, tuple[str, ...]]:
    if order.preferred_at is not None:
        start = order.preferred_at
        return start, start + timedelta(hours=ORDER_SLOT_HOURS), (slot_code(start),)
    day = order.preferred_date
    start = datetime.combine(day, time(0), tzinfo=CHINA)
    kind = "weekday" if day.weekday() < 5 else "weekend"
    parts = ("am", "pm", "eve") if order.preferred_slot == "day" else (order.preferred_slot,)
    return start, start + timedelta(days=1), tuple(f"{kind}_{p}" for p in parts)


def order_candidates(session: Session, order: Order, now: datetime, limit: int = CALLOUT_LIMIT) -> list[Volunteer]:
    """Who a call-out for an order nobody accepted would ask: the skill of its category, the
    teams of its community (anywhere when it has none), free then, opted in."""
    teams = list(session.scalars(select(Team).where(Team.community_id == order.community_id))) \
        if order.community_id is not None else []
    day = now.astimezone(CHINA).date()
    query = _pool(session, day, teams=teams, skills=[order.category_code])
    if order.follower_id is not None:
        query = query.where(Volunteer.follower_id != order.follower_id)
    start, end, slots = _order_window(order)
    out = []
    for v in session.scalars(query.limit(limit * 5)):
        # A whole-day window would make anyone with a shift that day busy: only the slot counts.
        busy_check = order.preferred_at is not None
        if (not v.availability or set(v.availability) & set(slots)) and not (busy_check and _busy(session, v.id, start, end)):
            out.append(v)
        if len(out) >= limit:
            break
    return out


def _record_callout(session: Session, volunteer: Volunteer, now: datetime, *, shift: Shift | None = None,
                    order: Order | None = None, coordinator_id: int | None, fields: dict, title: str) -> bool:
    day = now.astimezone(CHINA).date()
    try:
        with session.begin_nested():  # the unique (volunteer, day): a second call-out today loses only itself
            callout = Callout(volunteer_id=volunteer.id, shift_id=shift.id if shift else None,
                              order_id=order.id if order else None, day=day, sent_at=now, created_by=coordinator_id)
            session.add(callout)
            session.flush()
    except IntegrityError:
        return False
    notify(session, openid=volunteer.follower.openid, kind=CALLOUT_KIND, title=title, fields=fields,
           dedup_key=f"callout:{callout.id}")
    return True


def send_callout(session: Session, shift_id: int, now: datetime, *, coordinator_id: int | None = None,
                 limit: int = CALLOUT_LIMIT) -> int:
    """Ask free, opted-in volunteers to fill the shift; returns how many were asked."""
    shift = session.get(Shift, shift_id)
    if shift is None or shift.starts_at <= now or shift.activity.state != "published":
        return 0
    fields = {**acts.shift_fields(shift), "说明": "还缺人手，回复“报名”即可参加"}
    sent = sum(_record_callout(session, v, now, shift=shift, coordinator_id=coordinator_id, fields=fields,
                               title="志愿活动召集")
               for v in callout_candidates(session, shift, now, limit))
    shift.callout_at = shift.callout_at or now
    session.flush()
    return sent


def send_order_callout(session: Session, order_id: int, now: datetime, *, coordinator_id: int | None = None,
                       limit: int = CALLOUT_LIMIT) -> int:
    """Ask free, opted-in volunteers with the skill to take an order nobody accepted."""
    order = session.get(Order, order_id)
    if order is None or order.status not in ("submitted", "offered", "escalated"):
        return 0
    community = order.community.name if order.community is not None else "社区待确认"
    start, _, _ = _order_window(order)
    when = (f"{order.preferred_at.astimezone(CHINA):%m月%d日 %H:%M}" if order.preferred_at is not None
            else f"{order.preferred_date:%m月%d日}")
    fields = {"活动": order.sub_name, "时间": when, "地点": community, "说明": "暂无人接单，回复“报名”接单"}
    return sum(_record_callout(session, v, now, order=order, coordinator_id=coordinator_id, fields=fields,
                               title="服务工单召集")
               for v in order_candidates(session, order, now, limit))


@dataclass
class CalloutAnswer:
    outcome: str  # none | signed | waitlisted | pending | taken | closed | overlap | already | refused
    callout: Callout | None = None
    shift: Shift | None = None
    order: Order | None = None
    position: int | None = None
    message: str = ""  # why an order could not be taken


def answer_callout(session: Session, volunteer: Volunteer, now: datetime, *,
                   approval_above: int | None = acts.APPROVAL_ABOVE) -> CalloutAnswer:
    """"报名" after a call-out: sign up for its shift (the waitlist when full meanwhile) or take
    its order. Only the latest call-out of the last ANSWER_WINDOW counts."""
    callout = session.scalar(select(Callout).where(Callout.volunteer_id == volunteer.id,
                                                   Callout.sent_at > now - ANSWER_WINDOW)
                             .order_by(Callout.sent_at.desc(), Callout.id.desc()).limit(1))
    if callout is None:
        return CalloutAnswer("none")
    if callout.order_id is not None:
        from rules import dispatch  # dispatch imports this module (to call out): import it when used

        order = callout.order
        if callout.result == "taken":
            return CalloutAnswer("already", callout, order=order)
        try:
            dispatch.take(session, volunteer, order, now)
        except dispatch.DispatchError as e:
            callout.answered_at, callout.result = now, "refused"
            return CalloutAnswer("refused", callout, order=order, message=str(e))
        callout.answered_at, callout.result = now, "taken"
        return CalloutAnswer("taken", callout, order=order)
    r = acts.sign_up(session, volunteer, callout.shift_id, now, waitlist=True, approval_above=approval_above)
    outcome = {"already_signed": "already", "already_waitlisted": "already", "already_pending": "already"}.get(
        r.outcome, r.outcome)
    if outcome in ("signed", "waitlisted", "pending"):
        callout.answered_at, callout.result = now, outcome
    return CalloutAnswer(outcome, callout, shift=r.shift or callout.shift, position=r.position)


def auto_callout(session: Session, shift_id: int, now: datetime) -> int:
    """The scheduler's call-out for a shift at risk: once, even when nobody could be asked."""
    shift = acts.lock_shift(session, shift_id)
    if shift is None or shift.callout_at is not None:
        return 0
    send_callout(session, shift_id, now)
    shift.callout_at = now  # once, even when nobody could be asked
    return 1
