"""The dashboard: today's orders by state, what waits for approval, upcoming activities,
the next bus visits and the progress of their pushes."""

from __future__ import annotations

from datetime import timedelta

from flask import g
from sqlalchemy import func, select

from console.views.bus import dashboard_visits
from console.views.common import day_bounds, local_today
from console.views.orders import orders_today_by_state
from console.web import console, render
from rules import access
from rules import orders as order_rules
from store.models import HourRecord, Order, Volunteer
from store.models.activities import Activity

# Orders that need a coordinator: nobody has accepted them yet.
WAITING = ("submitted", "offered", "escalated")


@console.get("/")
def dashboard():
    scope = g.scope
    today = local_today(g.now)
    start, end = day_bounds(today)
    by_state = orders_today_by_state(start, end)
    pending_hours = g.db.execute(access.hour_records(scope, select(func.count(), func.coalesce(func.sum(HourRecord.minutes), 0)))
                                 .where(HourRecord.state == "pending")).one()
    manual_waiting = g.db.scalar(access.hour_records(scope, select(func.count()))
                                 .where(HourRecord.state == "pending", HourRecord.source == "manual",
                                        HourRecord.recorded_by != scope.coordinator_id))
    pending_volunteers = g.db.scalar(access.volunteers(scope, select(func.count())).where(Volunteer.state == "pending"))
    open_orders = g.db.scalar(access.orders(scope, select(func.count())).where(Order.status.in_(WAITING)))
    upcoming = list(g.db.scalars(access.activities(scope).where(
        Activity.starts_at >= g.now, Activity.starts_at < g.now + timedelta(days=7), Activity.state == "published")
        .order_by(Activity.starts_at).limit(5)))
    visits = dashboard_visits()
    return render("dashboard.html", today=today, by_state=by_state, states=order_rules.STATES,
                  pending_hours=pending_hours, manual_waiting=manual_waiting,
                  pending_volunteers=pending_volunteers, open_orders=open_orders, upcoming=upcoming,
                  visits=visits)
