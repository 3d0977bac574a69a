"""Orders: filter by state, category, community and date; an order's detail with its
history and offers; assign or reassign it to a volunteer of the subtree, picked from the
ranked candidates with the reasons for their rank.

Ranking, offers and (re)assignment are `rules.dispatch`'s (`rank`, `assign`); state changes
go through `rules.orders.transition` there. This page narrows the candidates to the
coordinator's subtree, and audits.
"""

from __future__ import annotations

from flask import g, request
from sqlalchemy import String, cast, func, select
from sqlalchemy.orm import selectinload

from console.views.common import args_builder, day_bounds, int_or_none, page_number, paged, parse_day
from console.web import audit, back, console, flash, render, services
from rules import access, dispatch, masks
from rules import orders as order_rules
from store.models import Community, Offer, Order, Team, Volunteer

CANDIDATE_LIMIT = 20
POOL_LIMIT = 300
ACTORS = {"resident": "居民", "volunteer": "志愿者", "coordinator": "管理员", "system": "系统"}
OFFER_STATES = {"offered": "待答复", "accepted": "已接单", "declined": "已婉拒", "expired": "超时未答",
                "withdrawn": "已撤回"}


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
    """The volunteer each order is offered to or accepted by (the latest live offer)."""
    if not order_ids:
        return {}
    rows = g.db.execute(select(Offer.order_id, Volunteer).join(Volunteer, Volunteer.id == Offer.volunteer_id)
                        .where(Offer.order_id.in_(order_ids), Offer.state.in_(("offered", "accepted")))
                        .order_by(Offer.id))
    return {oid: v for oid, v in rows}


def candidates_for(order: Order) -> list[dispatch.Candidate]:
    """`rules.dispatch.rank` over the subtree's active volunteers with the order's skill.

    At the district level that is thousands of people; the pool is the `POOL_LIMIT` nearest
    by team (the order's community, then its street, then the rest), which holds everyone
    who can earn the ranking's area points, loaded with their teams and followers at once."""
    street = order.community.street if order.community is not None else ""
    stmt = (access.volunteers(g.scope).join(Team, Team.id == Volunteer.team_id)
            .where(Volunteer.state == "active", cast(Volunteer.skills, String).like(f'%"{order.category_code}"%'))
            .order_by((Team.community_id == order.community_id).desc() if order.community_id else Volunteer.id,
                      (Team.street == street).desc() if street else Volunteer.id, Volunteer.id)
            .options(selectinload(Volunteer.follower), selectinload(Volunteer.team).selectinload(Team.community))
            .limit(POOL_LIMIT))
    return dispatch.rank(g.db, order, g.now, list(g.db.scalars(stmt)))[:CANDIDATE_LIMIT]


@console.get("/orders/<int:order_id>")
def order_detail(order_id: int):
    order = access.get(g.db, g.scope, Order, order_id)
    current = current_assignees([order.id]).get(order.id)
    offers = list(g.db.execute(select(Offer, Volunteer).join(Volunteer, Volunteer.id == Offer.volunteer_id)
                               .where(Offer.order_id == order.id).order_by(Offer.id)))
    assignable = order.status in dispatch.ASSIGNABLE
    teams = dict(g.db.execute(access.teams(g.scope, select(Team.id, Team.name))).all())
    return render("order.html", order=order, states=order_rules.STATES, slots=order_rules.SLOTS,
                  current=current, offers=offers, offer_states=OFFER_STATES, teams=teams, actors=ACTORS,
                  masked_phone=masks.phone(order.phone),
                  candidates=candidates_for(order) if assignable else [], assignable=assignable)


@console.post("/orders/<int:order_id>/assign")
def order_assign(order_id: int):
    order = access.get(g.db, g.scope, Order, order_id)
    volunteer = access.get(g.db, g.scope, Volunteer, request.form.get("volunteer_id"))
    reason = (request.form.get("reason") or "").strip()[:100]
    previous = current_assignees([order.id]).get(order.id)
    before = {"status": order.status, "volunteer": previous.id if previous else None}
    try:
        offer = dispatch.assign(g.db, order, volunteer, g.now, coordinator=g.coordinator, reason=reason,
                                settings=services().dispatch_settings)
    except (dispatch.DispatchError, order_rules.OrderError) as e:
        g.db.rollback()
        flash(getattr(e, "message", None) or str(e), "error")
        return back("console.order_detail", order_id=order_id)
    audit("order.reassign" if previous else "order.assign", entity="order", entity_id=order.id,
          before=before, after={"status": order.status, "volunteer": volunteer.id, "offer": offer.id},
          reason=reason or None)
    g.db.commit()
    flash(f"已将工单 {order.number} 指派给 {volunteer.name}（{volunteer.number}），等待其答复。")
    return back("console.order_detail", order_id=order_id)


def orders_today_by_state(day_start, day_end) -> dict[str, int]:
    rows = g.db.execute(access.orders(g.scope, select(Order.status, func.count()))
                        .where(Order.created_at >= day_start, Order.created_at < day_end)
                        .group_by(Order.status))
    return {status: n for status, n in rows}
