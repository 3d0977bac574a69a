"""Orders: filter by state, category, community and date; an order's detail with its
history; assign or reassign it to an active volunteer of the subtree.

State changes go through `store.orders.transition` (the order's rules and the resident's
push). Ranking candidates belongs to dispatch (issue 8); until it lands, `rank_candidates`
is the hook: it orders volunteers of the order's community first and says why.
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import g, request
from sqlalchemy import String, cast, func, select

from console.views.common import args_builder, day_bounds, int_or_none, page_number, paged, parse_day
from console.web import audit, back, console, flash, render
from pushes.outbox import notify
from dialogue import masks
from store import access, orders as order_rules
from store.models import Community, Order, OrderAssignment, Team, Volunteer

CANDIDATE_LIMIT = 20


@console.get("/orders")
def orders():
    scope = g.scope
    stmt = access.orders(scope)
    status = request.args.get("state", "")
    if status in order_rules.STATES:
        stmt = stmt.where(Order.status == status)
    category = request.args.get("category", "")
    if category:
        stmt = stmt.where(Order.category_code == category)
    community_id = int_or_none(request.args.get("community"))
    if community_id:
        stmt = stmt.where(Order.community_id == community_id)
    day = parse_day(request.args.get("date"))
    if day:
        start, end = day_bounds(day)
        stmt = stmt.where(Order.created_at >= start, Order.created_at < end)
    q = (request.args.get("q") or "").strip().upper()
    if q:
        stmt = stmt.where(Order.number == q)
    page = page_number()
    rows, has_next = paged(g.db, stmt.order_by(Order.id.desc()), page)
    communities = list(g.db.scalars(access.communities(scope).order_by(Community.name)))
    catalog = order_rules.current_catalog(g.db)
    assigned = current_assignees([o.id for o in rows])
    return render("orders.html", rows=rows, states=order_rules.STATES, communities=communities,
                  categories=[(c.code, c.name) for c in catalog.categories], assigned=assigned,
                  page=page, has_next=has_next, args=args_builder())


def current_assignees(order_ids) -> dict[int, Volunteer]:
    if not order_ids:
        return {}
    rows = g.db.execute(select(OrderAssignment.order_id, Volunteer).join(
        Volunteer, Volunteer.id == OrderAssignment.volunteer_id).where(
        OrderAssignment.order_id.in_(order_ids), OrderAssignment.active.is_(True)))
    return {oid: v for oid, v in rows}


@dataclass
class Candidate:
    volunteer: Volunteer
    team: str
    why: list[str]


def candidates_for(order: Order) -> list[Candidate]:
    """Active volunteers of the subtree with the order's skill (category)."""
    stmt = (access.volunteers(g.scope, select(Volunteer, Team))
            .join(Team, Team.id == Volunteer.team_id)
            .where(Volunteer.state == "active",
                   cast(Volunteer.skills, String).like(f'%"{order.category_code}"%')))
    if order.community_id is not None:
        # The order's own community first, then the rest, by number.
        stmt = stmt.order_by((Team.community_id == order.community_id).desc(), Volunteer.id)
    else:
        stmt = stmt.order_by(Volunteer.id)
    rows = g.db.execute(stmt.limit(CANDIDATE_LIMIT * 3)).all()
    return rank_candidates(order, rows)[:CANDIDATE_LIMIT]


def rank_candidates(order: Order, rows) -> list[Candidate]:
    """HOOK for dispatch (issue 8): replace with its ranked candidates and reasons (skill,
    distance, load, availability). Until then: skill match, own community first."""
    out = []
    for volunteer, team in rows:
        why = [f"具备“{order.category_name}”技能"]
        if order.community_id is not None and team.community_id == order.community_id:
            why.append("同社区")
        out.append(Candidate(volunteer, team.name, why))
    return out


@console.get("/orders/<int:order_id>")
def order_detail(order_id: int):
    order = access.get(g.db, g.scope, Order, order_id)
    current = current_assignees([order.id]).get(order.id)
    history = list(g.db.scalars(select(OrderAssignment).where(OrderAssignment.order_id == order.id)
                                .order_by(OrderAssignment.id)))
    names = {v.id: v for v in g.db.scalars(select(Volunteer).where(
        Volunteer.id.in_({a.volunteer_id for a in history})))} if history else {}
    assignable = order.status in ("submitted", "offered", "accepted", "escalated")
    return render("order.html", order=order, states=order_rules.STATES, slots=order_rules.SLOTS,
                  current=current, history=history, names=names, masked_phone=masks.phone(order.phone),
                  candidates=candidates_for(order) if assignable else [], assignable=assignable)


@console.post("/orders/<int:order_id>/assign")
def order_assign(order_id: int):
    order = access.get(g.db, g.scope, Order, order_id)
    volunteer = access.get(g.db, g.scope, Volunteer, request.form.get("volunteer_id"))
    reason = (request.form.get("reason") or "").strip()[:200]
    if volunteer.state != "active":
        flash("只能指派在册的志愿者。", "error")
        return back("console.order_detail", order_id=order_id)
    actor = order_rules.Actor("coordinator", g.scope.coordinator_id)
    previous = g.db.scalar(select(OrderAssignment).where(
        OrderAssignment.order_id == order.id, OrderAssignment.active.is_(True)).with_for_update())
    before = {"status": order.status, "volunteer": previous and previous.volunteer_id}
    if previous is not None and previous.volunteer_id == volunteer.id:
        flash("该志愿者已是当前指派对象。", "error")
        return back("console.order_detail", order_id=order_id)
    try:
        if order.status in ("offered", "accepted"):
            # A reassignment puts the order back before offering it to the new volunteer.
            order_rules.transition(g.db, order, "submitted", actor=actor, now=g.now, reason=reason or "改派")
        order_rules.transition(g.db, order, "offered", actor=actor, now=g.now,
                               reason=f"指派志愿者 {volunteer.number}" + (f"：{reason}" if reason else ""))
    except order_rules.OrderError as e:
        g.db.rollback()
        flash(e.message, "error")
        return back("console.order_detail", order_id=order_id)
    if previous is not None:
        previous.active = False
        previous.ended_at = g.now
    assignment = OrderAssignment(order_id=order.id, volunteer_id=volunteer.id, assigned_by=g.scope.coordinator_id,
                                 assigned_at=g.now, reason=reason or None)
    g.db.add(assignment)
    g.db.flush()
    if volunteer.follower is not None and volunteer.follower.subscribed:
        notify(g.db, openid=volunteer.follower.openid, kind="order_offer", title="新的服务工单",
               fields={"订单号": order.number, "服务项目": order.sub_name,
                       "时间": f"{order.preferred_date:%m月%d日} {order_rules.SLOTS.get(order.preferred_slot, '')}",
                       "备注": "管理员指派，请在公众号内回复接单或婉拒"},
               dedup_key=f"order:{order.number}:assignment:{assignment.id}")
    audit("order.reassign" if previous else "order.assign", entity="order", entity_id=order.id,
          before=before, after={"status": order.status, "volunteer": volunteer.id}, reason=reason or None)
    g.db.commit()
    flash(f"已将工单 {order.number} 指派给 {volunteer.name}（{volunteer.number}）。")
    return back("console.order_detail", order_id=order_id)


def orders_today_by_state(day_start, day_end) -> dict[str, int]:
    rows = g.db.execute(access.orders(g.scope, select(Order.status, func.count()))
                        .where(Order.created_at >= day_start, Order.created_at < day_end)
                        .group_by(Order.status))
    return {status: n for status, n in rows}
