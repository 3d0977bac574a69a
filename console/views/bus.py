"""The Volunteer Bus: schedule, change or cancel a visit (brigade and detachment
coordinators), and watch each announcement's fan-out to the community's subscribers.

The rules and the fan-out are `rules.bus`'s: every announcement records one push per
subscriber in batch `bus-<visit>-<change_no>`; the progress endpoint counts that batch's
rows by state, so the bar moves as the push worker sends them.
"""

from __future__ import annotations

from datetime import time

from flask import g, jsonify, redirect, request, url_for
from sqlalchemy import func, select

from console.views.common import CHINA, parse_day
from console.web import audit, console, flash, needs, render
from rules import access, notices
from rules import bus as bus_rules
from rules.audit import snapshot
from store.models import BusVisit, Community, Push

FINISHED = ("sent", "held", "delivered", "failed", "cancelled")
AUDITED = ("community_id", "starts_at", "ends_at", "place", "services", "state", "change_no", "note")


def progress(batch: str) -> dict:
    counts = dict(g.db.execute(select(Push.state, func.count()).where(Push.batch == batch).group_by(Push.state)).all())
    total = sum(counts.values())
    done = sum(counts.get(s, 0) for s in FINISHED)
    # Why rows failed, wait or are held, in the coordinator's words (rules.notices.ERRORS).
    reasons = "，".join(f"{said} {n}" for _, said, n in notices.outcomes(g.db, Push.batch == batch) if said)
    return {"batch": batch, "total": total, "done": done, "failed": counts.get("failed", 0), "reasons": reasons,
            "percent": 100 if total == 0 else int(done * 100 / total), "finished": done == total, "states": counts}


def label(visit: BusVisit) -> str:
    return f"{visit.community.name} · {bus_rules.when_text(visit)} · {visit.place}"


def dashboard_visits() -> list[dict]:
    visits = g.db.scalars(access.bus_visits(g.scope).where(BusVisit.state == "scheduled", BusVisit.ends_at >= g.now)
                          .order_by(BusVisit.starts_at).limit(5))
    return [{"id": v.id, "label": label(v), "batch": bus_rules.batch_id(v)} for v in visits]


def _span(form):
    day = parse_day(form.get("day"))
    try:
        start, end = (time.fromisoformat(form.get(k) or "") for k in ("start", "end"))
    except ValueError:
        return None
    if day is None:
        return None
    return bus_rules.local_span(day, start, end)


@console.get("/bus")
def bus():
    scope = g.scope
    past = request.args.get("when") == "past"
    stmt = access.bus_visits(scope)
    stmt = stmt.where(BusVisit.ends_at < g.now).order_by(BusVisit.starts_at.desc()) if past else \
        stmt.where(BusVisit.ends_at >= g.now).order_by(BusVisit.starts_at)
    visits = list(g.db.scalars(stmt.limit(100)))
    communities = list(g.db.scalars(access.communities(scope).order_by(Community.name)))
    return render("bus.html", visits=visits, past=past, communities=communities, label=label,
                  services=bus_rules.services_catalog(), can_manage=scope.can("bus.manage"),
                  batch_id=bus_rules.batch_id, service_names=bus_rules.service_names)


@console.post("/bus")
@needs("bus.manage")
def bus_schedule():
    community = access.get(g.db, g.scope, Community, request.form.get("community_id"))
    span = _span(request.form)
    try:
        if span is None:
            raise bus_rules.BusError("请填写日期和开始、结束时间。")
        visit = bus_rules.schedule(g.db, community=community, starts_at=span[0], ends_at=span[1],
                                   place=request.form.get("place") or "", services=request.form.getlist("services"),
                                   now=g.now, created_by=f"console:{g.scope.coordinator_id}")
    except bus_rules.BusError as e:
        g.db.rollback()
        flash(str(e), "error")
        return redirect(url_for("console.bus"))
    audit("bus.schedule", entity="bus_visit", entity_id=visit.id, after=snapshot(visit, AUDITED))
    g.db.commit()
    flash(f"已安排志愿巴士到{community.name}，正在通知订阅者。")
    return redirect(url_for("console.bus_visit", visit_id=visit.id))


@console.get("/bus/<int:visit_id>")
def bus_visit(visit_id: int):
    visit = access.get(g.db, g.scope, BusVisit, visit_id)
    local_start, local_end = visit.starts_at.astimezone(CHINA), visit.ends_at.astimezone(CHINA)
    form = {"day": local_start.date().isoformat(), "start": local_start.strftime("%H:%M"),
            "end": local_end.strftime("%H:%M"), "place": visit.place}
    announcements = [(n, progress(f"bus-{visit.id}-{n}")) for n in range(visit.change_no, -1, -1)]
    return render("bus_visit.html", visit=visit, label=label(visit), form=form, announcements=announcements,
                  services=bus_rules.services_catalog(), service_names=bus_rules.service_names,
                  can_manage=g.scope.can("bus.manage"))


def _update_visit(visit_id: int, action: str, done: str, apply):
    """Change or cancel a visit through `rules.bus`, audit it, and go back to its page."""
    visit = access.get(g.db, g.scope, BusVisit, visit_id, for_update=True)
    before = snapshot(visit, AUDITED)
    try:
        apply(visit)
    except bus_rules.BusError as e:
        g.db.rollback()
        flash(str(e), "error")
        return redirect(url_for("console.bus_visit", visit_id=visit_id))
    audit(action, entity="bus_visit", entity_id=visit.id, before=before,
          after=snapshot(visit, AUDITED), reason=visit.note)
    g.db.commit()
    flash(done)
    return redirect(url_for("console.bus_visit", visit_id=visit.id))


@console.post("/bus/<int:visit_id>/change")
@needs("bus.manage")
def bus_change(visit_id: int):
    def apply(visit):
        span = _span(request.form)
        if span is None:
            raise bus_rules.BusError("请填写日期和开始、结束时间。")
        bus_rules.change(g.db, visit, now=g.now, starts_at=span[0], ends_at=span[1],
                         place=request.form.get("place"), services=request.form.getlist("services") or None,
                         reason=request.form.get("reason") or "")
    return _update_visit(visit_id, "bus.change", "已修改，正在通知订阅者。", apply)


@console.post("/bus/<int:visit_id>/cancel")
@needs("bus.manage")
def bus_cancel(visit_id: int):
    def apply(visit):
        bus_rules.cancel(g.db, visit, now=g.now, reason=request.form.get("reason") or "")
    return _update_visit(visit_id, "bus.cancel", "已取消，正在通知订阅者。", apply)


@console.get("/bus/<int:visit_id>/progress.json")
def bus_progress(visit_id: int):
    """The fan-out of one announcement (`?n=` its change number; default the latest)."""
    visit = access.get(g.db, g.scope, BusVisit, visit_id)
    try:
        n = int(request.args.get("n", visit.change_no))
    except ValueError:
        n = visit.change_no
    n = max(0, min(n, visit.change_no))
    return jsonify(progress(f"bus-{visit.id}-{n}"))
