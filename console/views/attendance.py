"""Shifts that fill: a shift's roster (mark how each place ended, check in at the desk by
name or the phone's last 4 digits, approve sign-ups that wait), shifts at risk with their
call-out, and recurring shift patterns. The rules are `rules.attendance`, `rules.callouts`
and `rules.patterns`; every action is audited. The roster is one column on a phone: large
buttons, one volunteer a row.
"""

from __future__ import annotations

from datetime import date

from flask import g, redirect, request, url_for
from sqlalchemy import select

from console.views.common import int_or_none, local_today
from console.web import audit, console, flash, render
from rules import access, attendance, callouts, masks
from rules import activities as acts
from rules import patterns as pattern_rules
from store.models import Order, Team, Volunteer
from store.models.activities import Activity, Attendance, Project, Shift, SignUp
from store.models.attendance import ShiftPattern
from store.models.places import Place

WEEKDAY_LABELS = [f"周{d}" for d in acts.WEEKDAYS]
CHECK_WORDS = {"checked_in": "已签到", "checked_out": "已签退", "repeat": "刚刚已签到", "not_started": "已签到，尚未开始",
               "done": "该班次已签到签退", "open_elsewhere": "在其他活动有未签退的记录", "too_early": "还没到签到时间",
               "not_signed": "没有可签到的报名"}


def _shift(shift_id: int) -> Shift:
    shift = g.db.get(Shift, shift_id)
    if shift is None:
        raise access.OutOfScope(shift_id)
    access.get(g.db, g.scope, Activity, shift.activity_id)  # out of the subtree: 404
    return shift


def _signup(shift: Shift) -> SignUp:
    signup = g.db.get(SignUp, int_or_none(request.form.get("signup_id")) or 0)
    if signup is None or signup.shift_id != shift.id:
        raise access.OutOfScope("signup")
    return signup


def _back(shift: Shift, **args):
    return redirect(url_for("console.shift_roster", shift_id=shift.id, **args))


@console.get("/shifts/<int:shift_id>/roster")
def shift_roster(shift_id: int):
    shift = _shift(shift_id)
    rows = list(g.db.execute(select(SignUp, Volunteer).join(Volunteer, Volunteer.id == SignUp.volunteer_id)
                             .where(SignUp.shift_id == shift.id)
                             .order_by(SignUp.state, SignUp.position, Volunteer.name, SignUp.id)))
    scans = {a.volunteer_id: a for a in g.db.scalars(select(Attendance).where(Attendance.shift_id == shift.id))}
    query = (request.args.get("q") or "").strip()[:32]
    found = attendance.desk_matches(g.db, shift.id, query) if query else []
    view = acts.shift_view(g.db, shift.id)
    records = {v.id: acts.reliability(g.db, v.id, g.now) for s, v in rows if s.state == "pending"}
    return render("roster.html", shift=shift, activity=shift.activity, rows=rows, scans=scans, view=view,
                  labels=attendance.LABELS, query=query, found=found, records=records, started=shift.starts_at <= g.now,
                  desk_open=shift.starts_at - acts.EARLY_CHECKIN <= g.now < shift.ends_at,
                  phone=masks.phone)


@console.post("/shifts/<int:shift_id>/mark")
def shift_mark(shift_id: int):
    shift = _shift(shift_id)
    signup = _signup(shift)
    state = request.form.get("state") or ""
    before = {"attendance": signup.attendance}
    try:
        attendance.mark(g.db, signup.id, state, g.now, coordinator_id=g.coordinator.id)
    except attendance.MarkError as e:
        g.db.rollback()
        flash(str(e), "error")
        return _back(shift)
    audit("signup.mark", entity="signup", entity_id=signup.id, before=before, after={"attendance": state})
    g.db.commit()
    flash(f"已标记 {signup.volunteer.name}：{attendance.LABELS[state]}。")
    return _back(shift)


@console.post("/shifts/<int:shift_id>/desk")
def shift_desk(shift_id: int):
    shift = _shift(shift_id)
    signup = _signup(shift)
    result = attendance.desk_check(g.db, signup.id, g.now)
    if result.outcome in ("checked_in", "checked_out"):
        audit(f"signup.desk_{result.outcome}", entity="signup", entity_id=signup.id,
              after={"minutes": result.minutes} if result.outcome == "checked_out" else None)
        g.db.commit()
        flash(f"{signup.volunteer.name}：{CHECK_WORDS[result.outcome]}"
              + (f"，计入 {result.minutes} 分钟，待审核。" if result.outcome == "checked_out" else "。"))
    else:
        g.db.rollback()
        flash(f"{signup.volunteer.name}：{CHECK_WORDS.get(result.outcome, result.outcome)}。", "error")
    return _back(shift)


@console.post("/shifts/<int:shift_id>/decide")
def shift_decide(shift_id: int):
    shift = _shift(shift_id)
    signup = _signup(shift)
    approve = request.form.get("decision") == "approve"
    result = attendance.decide_signup(g.db, signup.id, approve, g.now)
    if result is None:
        g.db.rollback()
        flash("该报名已处理过了。", "error")
        return _back(shift)
    audit("signup.approve" if approve else "signup.refuse", entity="signup", entity_id=signup.id,
          before={"state": "pending"}, after={"state": signup.state})
    g.db.commit()
    flash(f"已{'批准' if approve else '拒绝'} {signup.volunteer.name} 的报名。")
    return _back(shift)


@console.post("/shifts/<int:shift_id>/minimum")
def shift_minimum(shift_id: int):
    shift = _shift(shift_id)
    text = (request.form.get("min_staff") or "").strip()
    value = int_or_none(text)
    if text and (value is None or not 0 <= value <= shift.capacity):
        flash(f"最少人数请填 0–{shift.capacity}，或留空表示不设。", "error")
        return _back(shift)
    before = {"min_staff": shift.min_staff}
    shift.min_staff = value if text else None
    audit("shift.minimum", entity="shift", entity_id=shift.id, before=before, after={"min_staff": shift.min_staff})
    g.db.commit()
    flash("已保存最少人数。")
    return _back(shift)


@console.post("/shifts/<int:shift_id>/callout")
def shift_callout(shift_id: int):
    shift = _shift(shift_id)
    sent = callouts.send_callout(g.db, shift.id, g.now, coordinator_id=g.coordinator.id)
    audit("shift.callout", entity="shift", entity_id=shift.id, after={"asked": sent})
    g.db.commit()
    flash(f"已向 {sent} 位空闲且愿意接收召集的志愿者发出召集。" if sent else
          "没有可召集的志愿者（需本队、技能相符、当时空闲、已开启召集，且今天未被召集过）。", "ok" if sent else "error")
    target = request.form.get("next")
    return redirect(url_for("console.shifts_at_risk")) if target == "at-risk" else _back(shift)


@console.post("/orders/<int:order_id>/callout")
def order_callout(order_id: int):
    order = access.get(g.db, g.scope, Order, order_id)
    sent = callouts.send_order_callout(g.db, order.id, g.now, coordinator_id=g.coordinator.id)
    audit("order.callout", entity="order", entity_id=order.id, after={"asked": sent})
    g.db.commit()
    flash(f"已向 {sent} 位志愿者发出召集，先回复“报名”者接单。" if sent else
          "没有可召集的志愿者（需具备该技能、当时空闲、已开启召集，且今天未被召集过）。", "ok" if sent else "error")
    return redirect(url_for("console.order_detail", order_id=order.id))


@console.get("/activities/at-risk")
def shifts_at_risk():
    views = callouts.at_risk(g.db, g.now, activity_ids=access.activities(g.scope, select(Activity.id)))
    return render("at_risk.html", views=views, days=callouts.AT_RISK_DAYS)


# ---- recurring shift patterns -------------------------------------------------------------

def _pattern(pattern_id: int) -> ShiftPattern:
    p = g.db.get(ShiftPattern, pattern_id)
    if p is None or p.project.team_id not in g.scope.team_ids:
        raise access.OutOfScope(pattern_id)
    return p


def _choices():
    projects = list(g.db.scalars(access.projects(g.scope).where(Project.active.is_(True)).order_by(Project.name)))
    places = list(g.db.scalars(access.places(g.scope).where(Place.active.is_(True)).order_by(Place.name)))
    return projects, places


def _teams():
    return list(g.db.scalars(access.teams(g.scope).order_by(Team.path)))


def _pattern_form(form, projects, places) -> tuple[dict | None, str | None]:
    project = next((p for p in projects if str(p.id) == form.get("project_id")), None)
    if project is None:
        return None, "请选择本辖区的项目。"
    title = (form.get("title") or "").strip()[:128]
    if not title:
        return None, "请填写活动名称。"
    place = next((p for p in places if str(p.id) == form.get("place_id")), None)
    if form.get("place_id") and place is None:
        return None, "请选择本辖区的地点。"
    try:
        starts_on = date.fromisoformat(form.get("starts_on") or "")
        ends_on = date.fromisoformat(form["ends_on"]) if form.get("ends_on") else None
    except ValueError:
        return None, "请填写正确的开始日期（结束日期可不填）。"
    exceptions = [d.strip() for d in (form.get("exceptions") or "").replace("，", ",").split(",") if d.strip()]
    minimum = (form.get("min_staff") or "").strip()
    values = dict(title=title, description=(form.get("description") or "").strip(),
                  weekdays=sorted({int(d) for d in form.getlist("weekdays") if d.isdigit()}),
                  every_weeks=int_or_none(form.get("every_weeks")) or 0, start_time=form.get("start_time") or "",
                  end_time=form.get("end_time") or "", shift_name=(form.get("shift_name") or "").strip()[:64],
                  capacity=int_or_none(form.get("capacity")) or 0,
                  min_staff=int_or_none(minimum) if minimum else None, starts_on=starts_on, ends_on=ends_on,
                  weeks_ahead=int_or_none(form.get("weeks_ahead")) or 0,
                  skip_holidays=form.get("skip_holidays") == "1", exceptions=exceptions)
    team_id = int_or_none(form.get("team_id"))
    if form.get("team_id") and team_id not in set(g.scope.team_ids):
        return None, "请选择本辖区的队伍。"
    values["team_id"] = team_id
    if minimum and values["min_staff"] is None:
        return None, "最少人数请填整数。"
    for key, label in (("capacity", "人数"), ("every_weeks", "间隔周数"), ("weeks_ahead", "提前生成的周数")):
        if int_or_none(form.get(key)) is None:
            return None, f"{label}请填整数。"
    return {"project": project, "place": place, "address": (form.get("address") or "").strip()[:255],
            "values": values}, None


def _form_of(p: ShiftPattern) -> dict:
    return dict(project_id=str(p.project_id), title=p.title, description=p.description, place_id=str(p.place_id or ""),
                address=p.address if p.place_id is None else "", team_id=str(p.team_id or ""), weekdays=[str(d) for d in p.weekdays],
                every_weeks=str(p.every_weeks), start_time=p.start_time, end_time=p.end_time,
                shift_name=p.shift_name, capacity=str(p.capacity),
                min_staff="" if p.min_staff is None else str(p.min_staff), starts_on=p.starts_on.isoformat(),
                ends_on=p.ends_on.isoformat() if p.ends_on else "", weeks_ahead=str(p.weeks_ahead),
                skip_holidays="1" if p.skip_holidays else "", exceptions=", ".join(p.exceptions or []))


class _Form(dict):
    """A plain dict standing in for request.form (getlist for the weekday boxes)."""

    def getlist(self, key):
        value = self.get(key) or []
        return value if isinstance(value, list) else [value]


@console.get("/patterns")
def patterns():
    rows = list(g.db.scalars(select(ShiftPattern).join(Project, Project.id == ShiftPattern.project_id)
                             .where(Project.team_id.in_(g.scope.team_ids))
                             .order_by(ShiftPattern.active.desc(), ShiftPattern.title)))
    return render("patterns.html", rows=rows, weekdays=WEEKDAY_LABELS)


@console.route("/patterns/new", methods=["GET", "POST"])
def pattern_new():
    projects, places = _choices()
    error = None
    form = request.form if request.method == "POST" else _Form(every_weeks="1", weeks_ahead="4", capacity="10",
                                                               skip_holidays="1", starts_on=local_today(g.now).isoformat())
    if request.method == "POST":
        parsed, error = _pattern_form(form, projects, places)
        if parsed:
            try:
                p = pattern_rules.add_pattern(g.db, project=parsed["project"], place=parsed["place"],
                                           address=parsed["address"], now=g.now, created_by=g.coordinator.id,
                                           **parsed["values"])
            except pattern_rules.BadPattern as e:
                g.db.rollback()
                error = str(e)
            else:
                made = g.db.scalar(select(Activity.id).where(Activity.pattern_id == p.id).limit(1))
                audit("pattern.create", entity="shift_pattern", entity_id=p.id,
                      after={k: str(v) for k, v in parsed["values"].items()})
                g.db.commit()
                flash(f"已建立排班“{p.title}”" + ("，未来几周的班次已生成。" if made else "。"))
                return redirect(url_for("console.patterns"))
    return render("pattern_form.html", form=form, projects=projects, places=places, error=error, pattern=None,
                  weekdays=WEEKDAY_LABELS, teams=_teams()), (400 if error else 200)


@console.route("/patterns/<int:pattern_id>/edit", methods=["GET", "POST"])
def pattern_edit(pattern_id: int):
    p = _pattern(pattern_id)
    projects, places = _choices()
    error = None
    form = request.form if request.method == "POST" else _Form(_form_of(p))
    if request.method == "POST":
        parsed, error = _pattern_form(form, projects, places)
        if parsed:
            before = {k: str(v) for k, v in _form_of(p).items()}
            values = dict(parsed["values"], active=form.get("active", "1") == "1")
            if parsed["place"] is None:
                p.address = parsed["address"]
            try:
                done = pattern_rules.edit_pattern(g.db, p, g.now, place=parsed["place"], **values)
            except pattern_rules.BadPattern as e:
                g.db.rollback()
                error = str(e)
            else:
                audit("pattern.edit", entity="shift_pattern", entity_id=p.id, before=before,
                      after={k: str(v) for k, v in values.items()})
                g.db.commit()
                flash(f"已保存。调整 {done.changed} 个未来班次，取消 {done.called_off} 个，新增 {len(done.made)} 个；"
                      f"已通知 {done.told} 位志愿者。")
                return redirect(url_for("console.patterns"))
    return render("pattern_form.html", form=form, projects=projects, places=places, error=error, pattern=p,
                  weekdays=WEEKDAY_LABELS, teams=_teams()), (400 if error else 200)
