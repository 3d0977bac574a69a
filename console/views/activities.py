"""Activities and shifts: create and edit, the roster of each shift (signed and
waitlisted), and attendance (check-in, check-out, credited minutes, flags).

Creating goes through `rules.activities.add_activity`; sign-ups, waitlist promotion and
check-in are that domain's (chat) and only shown here. Editing an activity's fields and
adding a shift, which the domain has no function for yet, are done on the models.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from flask import g, redirect, request, url_for
from sqlalchemy import func, select

from console.views.common import CHINA, args_builder, int_or_none, page_number, paged, parse_day
from console.web import audit, console, flash, render
from rules import access
from rules import activities as activity_rules
from rules.attendance import LABELS
from rules.audit import snapshot
from store.models import Volunteer
from store.models.activities import Activity, Attendance, Project, Shift, SignUp
from store.models.places import Place

AUDITED = ("title", "description", "place_id", "starts_at", "ends_at", "capacity", "state", "project_id")


@console.get("/activities")
def activities():
    scope = g.scope
    stmt = access.activities(scope)
    upcoming = request.args.get("when", "upcoming") != "past"
    stmt = stmt.where(Activity.ends_at >= g.now) if upcoming else stmt.where(Activity.ends_at < g.now)
    page = page_number()
    rows, has_next = paged(g.db, stmt.order_by(Activity.starts_at.asc() if upcoming else Activity.starts_at.desc()), page)
    counts = signup_counts([a.id for a in rows])
    return render("activities.html", rows=rows, counts=counts, upcoming=upcoming, page=page,
                  has_next=has_next, args=args_builder())


def signup_counts(activity_ids) -> dict[int, dict[str, int]]:
    if not activity_ids:
        return {}
    out: dict[int, dict[str, int]] = {}
    rows = g.db.execute(select(Shift.activity_id, SignUp.state, func.count()).join(Shift, Shift.id == SignUp.shift_id)
                        .where(Shift.activity_id.in_(activity_ids)).group_by(Shift.activity_id, SignUp.state))
    for aid, state, n in rows:
        out.setdefault(aid, {})[state] = n
    return out


def _parse_local(day_text, time_text) -> datetime | None:
    day = parse_day(day_text)
    try:
        hh, mm = (int(x) for x in (time_text or "").split(":")[:2])
        return datetime(day.year, day.month, day.day, hh, mm, tzinfo=CHINA) if day else None
    except (ValueError, TypeError):
        return None


def _form_errors(form, projects, places):
    """Validated values from the activity form, or a Chinese message."""
    project_id = int_or_none(form.get("project_id"))
    if project_id not in {p.id for p in projects}:
        return None, "请选择本辖区的项目。"
    title = (form.get("title") or "").strip()[:128]
    if not title:
        return None, "请填写活动名称。"
    starts = _parse_local(form.get("day"), form.get("start"))
    ends = _parse_local(form.get("day"), form.get("end"))
    if starts is None or ends is None or ends <= starts:
        return None, "请填写日期，以及晚于开始时间的结束时间。"
    capacity = int_or_none(form.get("capacity"))
    if not capacity or not 1 <= capacity <= 1000:
        return None, "每个班次的人数请填 1–1000。"
    place_id = int_or_none(form.get("place_id"))
    if place_id and place_id not in {p.id for p in places}:
        return None, "请选择本辖区的地点。"
    return dict(project_id=project_id, title=title, description=(form.get("description") or "").strip(),
                place_id=place_id or None, starts_at=starts, ends_at=ends, capacity=capacity), None


def _choices():
    projects = list(g.db.scalars(access.projects(g.scope).where(Project.active.is_(True)).order_by(Project.name)))
    places = list(g.db.scalars(access.places(g.scope).where(Place.active.is_(True)).order_by(Place.name)))
    return projects, places


def _apply(activity: Activity, values: dict, places) -> None:
    for k, v in values.items():
        setattr(activity, k, v)
    place = next((p for p in places if p.id == values["place_id"]), None)
    if place is not None:
        activity.address, activity.lat, activity.lng, activity.radius_m = place.address, place.lat, place.lng, place.radius_m


@console.route("/activities/new", methods=["GET", "POST"])
def activity_new():
    projects, places = _choices()
    form = request.form if request.method == "POST" else {}
    error = None
    if request.method == "POST":
        values, error = _form_errors(form, projects, places)
        if values:
            project = next(p for p in projects if p.id == values["project_id"])
            place = next((p for p in places if p.id == values["place_id"]), None)
            # One shift covering the whole activity; more can be added on its page.
            activity = activity_rules.add_activity(
                g.db, project=project, title=values["title"], description=values["description"],
                shifts=[(values["starts_at"], values["ends_at"], "全程")], capacity=values["capacity"],
                place=place, now=g.now)
            audit("activity.create", entity="activity", entity_id=activity.id,
                  after=snapshot(activity, AUDITED))
            g.db.commit()
            flash(f"已发布活动“{activity.title}”。")
            return redirect(url_for("console.activity_detail", activity_id=activity.id))
    return render("activity_form.html", form=form, projects=projects, places=places, error=error,
                  activity=None), (400 if error else 200)


@console.route("/activities/<int:activity_id>/edit", methods=["GET", "POST"])
def activity_edit(activity_id: int):
    activity = access.get(g.db, g.scope, Activity, activity_id)
    projects, places = _choices()
    error = None
    if request.method == "POST":
        form = request.form
        values, error = _form_errors(form, projects, places)
        if values:
            before = snapshot(activity, AUDITED)
            _apply(activity, values, places)
            audit("activity.edit", entity="activity", entity_id=activity.id, before=before,
                  after=snapshot(activity, AUDITED))
            g.db.commit()
            flash("已保存。")
            return redirect(url_for("console.activity_detail", activity_id=activity.id))
    else:
        local_start, local_end = activity.starts_at.astimezone(CHINA), activity.ends_at.astimezone(CHINA)
        form = dict(project_id=str(activity.project_id), title=activity.title, description=activity.description,
                    place_id=str(activity.place_id or ""), day=local_start.date().isoformat(),
                    start=local_start.strftime("%H:%M"), end=local_end.strftime("%H:%M"),
                    capacity=str(activity.capacity))
    return render("activity_form.html", form=form, projects=projects, places=places, error=error,
                  activity=activity), (400 if error else 200)


@dataclass
class RosterLine:
    signup: SignUp
    volunteer: Volunteer
    attendance: Attendance | None


@console.get("/activities/<int:activity_id>")
def activity_detail(activity_id: int):
    activity = access.get(g.db, g.scope, Activity, activity_id)
    shifts = list(g.db.scalars(select(Shift).where(Shift.activity_id == activity.id).order_by(Shift.starts_at)))
    shift_ids = [s.id for s in shifts]
    rosters: dict[int, list[RosterLine]] = {s.id: [] for s in shifts}
    if shift_ids:
        attendance = {(a.shift_id, a.volunteer_id): a for a in g.db.scalars(
            select(Attendance).where(Attendance.shift_id.in_(shift_ids)))}
        rows = g.db.execute(select(SignUp, Volunteer).join(Volunteer, Volunteer.id == SignUp.volunteer_id)
                            .where(SignUp.shift_id.in_(shift_ids))
                            .order_by(SignUp.shift_id, SignUp.state, SignUp.position, SignUp.id))
        for signup, volunteer in rows:
            rosters[signup.shift_id].append(RosterLine(signup, volunteer, attendance.get((signup.shift_id, volunteer.id))))
    return render("activity.html", activity=activity, shifts=shifts, rosters=rosters)


@console.post("/activities/<int:activity_id>/shifts")
def shift_add(activity_id: int):
    activity = access.get(g.db, g.scope, Activity, activity_id)
    local_day = activity.starts_at.astimezone(CHINA).date().isoformat()
    starts = _parse_local(local_day, request.form.get("start"))
    ends = _parse_local(local_day, request.form.get("end"))
    capacity = int_or_none(request.form.get("capacity"))
    name = (request.form.get("name") or "").strip()[:64]
    if starts is None or ends is None or ends <= starts or not capacity or not 1 <= capacity <= 1000:
        flash("请填写班次的开始、结束时间和 1–1000 的人数。", "error")
    else:
        shift = Shift(activity_id=activity.id, name=name, starts_at=starts, ends_at=ends, capacity=capacity)
        g.db.add(shift)
        g.db.flush()
        audit("shift.create", entity="shift", entity_id=shift.id,
              after={"activity": activity.id, "name": name, "starts_at": starts, "ends_at": ends, "capacity": capacity})
        g.db.commit()
        flash("已添加班次。")
    return redirect(url_for("console.activity_detail", activity_id=activity.id))


@console.post("/activities/<int:activity_id>/cancel")
def activity_cancel(activity_id: int):
    activity = access.get(g.db, g.scope, Activity, activity_id)
    if activity.state != "cancelled":
        before = {"state": activity.state}
        reason = (request.form.get("reason") or "").strip()
        # The domain withdraws reminders and tells everyone signed or waiting, once.
        told = activity_rules.cancel_activity(g.db, activity.id, g.now, reason)
        audit("activity.cancel", entity="activity", entity_id=activity.id, before=before,
              after={"state": "cancelled", "told": told}, reason=reason or None)
        g.db.commit()
        flash(f"活动已取消，已通知 {told} 位志愿者。")
    return redirect(url_for("console.activity_detail", activity_id=activity.id))


@dataclass
class SignupLine:
    activity: str
    starts_at: datetime
    state: str
    attendance: str = ""  # how the place ended (到岗 / 缺席 / 请假 / 迟到早退), with late notice


SIGNUP_LABELS = {"signed": "已报名", "waitlisted": "候补", "cancelled": "已取消", "pending": "待审核"}


def signups_of(session, volunteer_id: int, limit: int = 20) -> list[SignupLine]:
    rows = session.execute(select(Activity.title, Shift.starts_at, SignUp.state, SignUp.attendance, SignUp.late_notice)
                           .join(Shift, Shift.id == SignUp.shift_id).join(Activity, Activity.id == Shift.activity_id)
                           .where(SignUp.volunteer_id == volunteer_id)
                           .order_by(Shift.starts_at.desc()).limit(limit))
    return [SignupLine(t, s, SIGNUP_LABELS.get(st, st),
                       LABELS.get(att, "") + ("（临时）" if late else "")) for t, s, st, att, late in rows]
