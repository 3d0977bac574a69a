"""我的订单: the visitor's own orders, each with its timeline (submitted → offered → accepted
→ served → confirmed → rated, with the time each step was reached), confirming a finished
service, rating it with a comment, cancelling where the order rules allow.

Every change goes through the domain's own functions (`rules.dispatch.cancel` and
`confirm`, `rules.orders.rate_order`), as the chat's 我的订单 does; another follower's
order number is a 404, and nothing changes.
"""

from __future__ import annotations

from flask import abort, g, redirect, request, url_for

from pages.web import pages, render
from rules import dispatch
from rules import orders as order_rules
from rules.orders import Actor, OrderError

LIST_LIMIT = 50
# The steps a resident follows, and the states that count as having reached each.
STEPS = (
    ("已提交", ("submitted",)),
    ("已派单", ("offered",)),
    ("志愿者接单", ("accepted",)),
    ("服务完成", ("in_service", "completed")),
    ("已确认", ("confirmed",)),
    ("已评价", ("rated",)),
)
ORDER_OF_STEPS = ("submitted", "offered", "accepted", "in_service", "completed", "confirmed", "rated")
NOTES = {"cancelled": "已取消订单。", "confirmed": "已确认服务完成，谢谢！", "rated": "感谢您的评价！"}


def timeline(order) -> list[dict]:
    """Each step with when it was first reached (None: not yet); a step skipped on the way
    (an order accepted without an offer) counts as passed once a later one is reached."""
    reached: dict[str, object] = {}
    for event in order.events:
        reached.setdefault(event.to_status, event.at)
    reached.setdefault("submitted", order.created_at)
    current = ORDER_OF_STEPS.index(order.status) if order.status in ORDER_OF_STEPS else None
    furthest = max([ORDER_OF_STEPS.index(s) for s in reached if s in ORDER_OF_STEPS] + [current or 0])
    out = []
    for label, states in STEPS:
        at = next((reached[s] for s in states if s in reached), None)
        passed = at is not None or ORDER_OF_STEPS.index(states[-1]) <= furthest
        out.append({"label": label, "at": at, "done": passed})
    return out


def _mine(number: str):
    follower = g.visitor.follower
    order = order_rules.order_of(g.db, follower.id, number) if follower is not None else None
    if order is None or order.erased_at is not None:
        abort(404)
    return order


@pages.get("/orders")
def orders():
    follower = g.visitor.follower
    mine = order_rules.orders_of(g.db, follower.id, limit=LIST_LIMIT) if follower is not None else []
    return render("orders.html", orders=mine, states=order_rules.STATES)


@pages.get("/orders/<number>")
def order(number: str):
    o = _mine(number)
    return render("order.html", o=o, steps=timeline(o), states=order_rules.STATES, note=NOTES.get(request.args.get("done")),
                  cancellable=o.status in order_rules.CANCELLABLE, ratable=o.status in order_rules.RATABLE,
                  confirmable=o.status == "completed", error=None)


def _act(number: str, action):
    o = _mine(number)
    actor = Actor("resident", g.visitor.follower.id)
    try:
        done = action(o, actor)
    except OrderError as e:  # dispatch's refusals are OrderErrors too
        g.db.rollback()
        o = _mine(number)
        return render("order.html", o=o, steps=timeline(o), states=order_rules.STATES, note=None,
                      cancellable=o.status in order_rules.CANCELLABLE, ratable=o.status in order_rules.RATABLE,
                      confirmable=o.status == "completed", error=e.message), 409
    g.db.commit()
    return redirect(url_for("pages.order", number=number, done=done))


@pages.post("/orders/<number>/cancel")
def order_cancel(number: str):
    reason = (request.form.get("reason") or "").strip()[:100] or "居民在网页上取消"

    def cancel(o, actor):
        dispatch.cancel(g.db, o, actor=actor, reason=reason, now=g.now)
        return "cancelled"
    return _act(number, cancel)


@pages.post("/orders/<number>/confirm")
def order_confirm(number: str):
    def confirm(o, actor):
        dispatch.confirm(g.db, o, actor=actor, now=g.now)
        return "confirmed"
    return _act(number, confirm)


@pages.post("/orders/<number>/rate")
def order_rate(number: str):
    try:
        stars = int(request.form.get("stars", ""))
    except ValueError:
        stars = 0
    comment = (request.form.get("comment") or "").strip()[:200] or None

    def rate(o, actor):
        if o.status == "completed":  # rating a completed service confirms it too, as in chat
            dispatch.confirm(g.db, o, actor=actor, now=g.now)
        order_rules.rate_order(g.db, o, actor=actor, stars=stars, comment=comment, now=g.now)
        return "rated"
    return _act(number, rate)
