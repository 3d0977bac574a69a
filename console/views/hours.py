"""Service hours: the pending queue, approving or rejecting one or many with a reason, and
manual entries (补录), which a second coordinator must approve.

The rules (atomic decisions, time-bank credit, star levels, overlaps) are
`rules.volunteering`'s; this page scopes, checks the two-person rule for manual entries,
and writes the audit log.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from flask import g, redirect, request, url_for
from sqlalchemy import select

from console.views.common import CHINA, args_builder, int_or_none, page_number, paged, parse_day
from console.web import audit, back, console, flash, render, services
from rules import access, volunteering
from rules.audit import snapshot
from store.models import Coordinator, HourRecord, Team, Volunteer

STATES = {"pending": "待审核", "approved": "已通过", "rejected": "已驳回"}
SOURCES = {"activity": "活动", "order": "工单", "manual": "补录"}
AUDITED = ("state", "minutes", "decided_by", "reason")


@console.get("/hours")
def hours():
    scope = g.scope
    state = request.args.get("state", "pending")
    if state not in STATES:
        state = "pending"
    stmt = access.hour_records(scope).where(HourRecord.state == state)
    team_id = int_or_none(request.args.get("team"))
    if team_id:
        stmt = stmt.where(Volunteer.team_id == team_id)
    source = request.args.get("source")
    if source in SOURCES:
        stmt = stmt.where(HourRecord.source == source)
    q = (request.args.get("q") or "").strip()
    if q:
        stmt = stmt.where((Volunteer.number == q.upper()) | (Volunteer.name == q))
    order = HourRecord.id.asc() if state == "pending" else HourRecord.id.desc()
    page = page_number()
    records, has_next = paged(g.db, stmt.order_by(order), page)
    volunteers = {v.id: v for v in g.db.scalars(select(Volunteer).where(
        Volunteer.id.in_({r.volunteer_id for r in records})))} if records else {}
    recorders = {c.id: c.name for c in g.db.scalars(select(Coordinator).where(
        Coordinator.id.in_({r.recorded_by for r in records if r.recorded_by})))} if records else {}
    teams = list(g.db.scalars(access.teams(scope).order_by(Team.path)))
    return render("hours.html", records=records, volunteers=volunteers, recorders=recorders,
                  teams=teams, state=state, states=STATES, sources=SOURCES, page=page,
                  has_next=has_next, args=args_builder())


@console.post("/hours/decide")
def hours_decide():
    scope = g.scope
    approve = request.form.get("decision") == "approve"
    reason = (request.form.get("reason") or "").strip()
    ids = request.form.getlist("ids")
    if not ids:
        flash("请先勾选要处理的记录。", "error")
        return back("console.hours")
    records = access.get_many(g.db, scope, HourRecord, ids)  # all in the subtree, or 404
    if not approve and not reason:
        flash("驳回需要填写原因。", "error")
        return back("console.hours")
    before = {r.id: snapshot(r, AUDITED) for r in records}
    try:
        decisions = volunteering.decide_hours(g.db, [r.id for r in records], approve=approve, now=g.now,
                                              coordinator=g.coordinator, reason=reason,
                                              bank=services().timebank_policy)
    except volunteering.VolunteerError as e:
        g.db.rollback()
        flash(str(e), "error")
        return back("console.hours")
    done = [d for d in decisions if d.outcome in ("approved", "rejected")]
    for d in done:
        record = g.db.get(HourRecord, d.record_id)
        audit("hours.approve" if approve else "hours.reject", entity="hour_record", entity_id=d.record_id,
              before=before[d.record_id], after=snapshot(record, AUDITED), reason=reason or None)
    g.db.commit()
    verb = "通过" if approve else "驳回"
    message = f"已{verb} {len(done)} 条记录。"
    # Two-person rule (kept by decide_hours): own manual entries need another coordinator.
    own_manual = [d for d in decisions if d.outcome == "own_entry"]
    skipped = len(decisions) - len(done) - len(own_manual)
    if skipped:
        message += f" {skipped} 条已被他人处理。"
    if own_manual:
        message += f" {len(own_manual)} 条补录由您本人录入，需另一位管理员审核。"
    flash(message, "ok" if done else "error")
    return back("console.hours")


@console.route("/hours/new", methods=["GET", "POST"])
def hours_new():
    """A manual entry (补录): pending until a second coordinator approves it."""
    scope = g.scope
    form = request.form if request.method == "POST" else request.args
    error = None
    if request.method == "POST":
        number = (form.get("number") or "").strip().upper()
        volunteer = g.db.scalar(access.volunteers(scope).where(Volunteer.number == number))
        day = parse_day(form.get("day"))
        minutes = int_or_none(form.get("minutes"))
        start = (form.get("start") or "").strip()
        try:
            hh, mm = (int(x) for x in start.split(":"))
            started = datetime(day.year, day.month, day.day, hh, mm, tzinfo=CHINA) if day else None
        except (ValueError, TypeError):
            started = None
        description = (form.get("description") or "").strip()
        if volunteer is None:
            error = "找不到该编号的志愿者（或不在您管理的范围内）。"
        elif started is None or not minutes or minutes <= 0 or minutes > 24 * 60:
            error = "请填写日期、开始时间（如 09:00）和 1–1440 之间的分钟数。"
        elif not description:
            error = "请说明服务内容与补录原因。"
        else:
            try:
                record = volunteering.record_hours(
                    g.db, volunteer, source="manual", started_at=started,
                    ended_at=started + timedelta(minutes=minutes), now=g.now,
                    recorded_by=g.coordinator, description=description)
            except volunteering.VolunteerError as e:
                g.db.rollback()
                error = str(e)
            else:
                audit("hours.manual", entity="hour_record", entity_id=record.id,
                      after={"volunteer": volunteer.number, "minutes": minutes,
                             "started_at": started, "description": description})
                g.db.commit()
                flash(f"已补录 {minutes} 分钟，待另一位管理员审核。")
                return redirect(url_for("console.hours"))
    return render("hours_new.html", form=form, error=error), (400 if error else 200)
