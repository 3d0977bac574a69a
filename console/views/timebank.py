"""时间银行: the district pool and its grants. A coordinator asks for pool minutes for a
resident in need (found by an order they placed in the coordinator's area, or a volunteer
number in their subtree) with a reason; a coordinator one team level up approves or
rejects it (rules.timebank_pool.may_approve). Every request and decision goes to the audit log;
the transfer itself is a ledger transaction naming requester and approver."""

from __future__ import annotations

from flask import g, redirect, request, url_for
from sqlalchemy import select

from console.views.common import parse_day
from console.web import audit, console, flash, render, services
from rules import access, timebank, volunteering
from rules import timebank_pool as pool
from store.models import Coordinator, Order, PoolGrant, Team, TimeAccount, Volunteer
from store.models.timebank import POOL

STATES = {"pending": "待审批", "approved": "已通过", "rejected": "已驳回"}


def _recipient(number: str):
    """The follower a grant is for, within the coordinator's area; None when not found."""
    number = number.strip().upper()
    if number.startswith("D"):
        order = g.db.scalar(access.orders(g.scope).where(Order.number == number))
        return order.follower if order is not None else None
    vol = g.db.scalar(access.volunteers(g.scope).where(Volunteer.number == number))
    return vol.follower if vol is not None else None


def _page(form, error=None, status=200):
    me = g.db.get(Coordinator, g.scope.coordinator_id)
    mine = list(g.db.scalars(select(PoolGrant).where(PoolGrant.team_id.in_(g.scope.team_ids))
                             .order_by(PoolGrant.id.desc()).limit(30)))
    people = {c.id: c.name for c in g.db.scalars(select(Coordinator).where(
        Coordinator.id.in_({x.requested_by for x in mine} | {x.decided_by for x in mine if x.decided_by})))}
    teams = {t.id: t.name for t in g.db.scalars(select(Team).where(Team.id.in_({x.team_id for x in mine})))}
    in_pool = g.db.scalar(select(TimeAccount.balance).where(TimeAccount.code == POOL)) or 0
    return render("timebank.html", pool=in_pool, waiting=pool.pending_grants(g.db, me), grants=mine,
                  people=people, teams=teams, states=STATES, form=form, error=error), status


@console.get("/timebank")
def timebank_page():
    return _page(request.args)


@console.post("/timebank/grants")
def timebank_request():
    form = request.form
    follower = _recipient(form.get("number") or "")
    hours = (form.get("hours") or "").strip()
    try:
        minutes = round(float(hours) * 60) if hours else 0
    except ValueError:
        minutes = 0
    born = parse_day(form.get("born")) if form.get("born") else None
    if follower is None:
        return _page(form, "找不到这位居民：请填写您管理范围内的订单号或志愿者编号。", 400)
    try:
        grant = pool.request_grant(g.db, g.coordinator, follower, minutes, form.get("reason") or "",
                                       now=g.now, policy=services().timebank_policy, birth_date=born)
    except timebank.TimeBankError as e:
        g.db.rollback()
        return _page(form, str(e), 400)
    audit("timebank.grant_request", entity="pool_grant", entity_id=grant.id,
          after={"minutes": grant.minutes, "reason": grant.reason}, reason=grant.reason)
    g.db.commit()
    flash(f"已提交资助申请（{grant.minutes} 分钟），等待上一级审批。")
    return redirect(url_for("console.timebank_page"))


@console.post("/timebank/grants/<int:grant_id>")
def timebank_decide(grant_id: int):
    grant = g.db.get(PoolGrant, grant_id)
    me = g.db.get(Coordinator, g.scope.coordinator_id)
    if grant is None or not pool.may_approve(g.db, me, grant):
        flash("这笔资助不由您审批。", "error")
        return redirect(url_for("console.timebank_page"))
    approve = request.form.get("decision") == "approve"
    note = (request.form.get("note") or "").strip()
    try:
        pool.decide_grant(g.db, grant, me, approve=approve, now=g.now, note=note,
                              rules=volunteering.rules().bank)
    except timebank.TimeBankError as e:
        g.db.rollback()
        flash(str(e), "error")
        return redirect(url_for("console.timebank_page"))
    audit("timebank.grant_approve" if approve else "timebank.grant_reject", entity="pool_grant",
          entity_id=grant.id, after={"state": grant.state, "tx_id": grant.tx_id}, reason=note or None)
    g.db.commit()
    flash("已批准，时长已从公益池转给居民。" if approve else "已驳回。")
    return redirect(url_for("console.timebank_page"))

