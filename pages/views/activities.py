"""活动: upcoming shifts by day, filtered by place and by team, signing up (or joining the
waiting list of a full shift), the visitor's own shifts and cancelling one, and checking in
by scanning the place's QR code (the JS-SDK's scanner hands the scan to WeChat, which sends
it to the account exactly as a scan from the chat: the check-in rules stay in one place).

Every change is `rules.activities.sign_up` / `cancel`; another volunteer's sign-up id is a 404.
"""

from __future__ import annotations

from collections import OrderedDict

from flask import abort, g, redirect, request, url_for
from sqlalchemy import select

from pages.web import local, needs_volunteer, pages, render, services
from rules import activities as acts
from store.models import Place, Team
from store.models.activities import SignUp

LISTED = 60  # shifts on the page, soonest first (about a week of a district's); the filters narrow it
NOTES = {
    "signed": "报名成功！活动前一天会提醒您。到场后扫码签到。",
    "waitlisted": "名额已满，已为您加入候补名单，有人取消会自动递补并通知您。",
    "already_signed": "您已经报名了这个时段。",
    "already_waitlisted": "您已在这个时段的候补名单中。",
    "full": "这个时段刚刚报满了，可以加入候补。",
    "overlap": "这个时段与您已报名的其他时段时间重叠，不能报名。",
    "closed": "这个时段已经开始或已停止报名。",
    "pending": "已提交报名，因近期有缺席或临时请假，需活动负责人审核，结果会通知您。",
    "already_pending": "您的报名正在等待活动负责人审核。",
    "cancelled": "已取消报名，已为您请假，名额已让给其他志愿者。",
    "cancelled_late": "已取消报名。离活动开始较近，这次记为临时请假。",
    "already_cancelled": "这个报名已经取消过了。",
    "started": "活动已经开始，不能在线取消。如不能到场，请联系活动负责人。",
}


def _load_activities(views) -> list:
    """The projects' teams and the activities' places, in two queries: the page then reads
    them from the session instead of one query per shift. The caller keeps the returned
    rows for the request (the session's identity map holds them only while referenced)."""
    team_ids = {v.shift.activity.project.team_id for v in views}
    place_ids = {v.shift.activity.place_id for v in views} - {None}
    rows = list(g.db.scalars(select(Team).where(Team.id.in_(team_ids)))) if team_ids else []
    return rows + (list(g.db.scalars(select(Place).where(Place.id.in_(place_ids)))) if place_ids else [])


def _int(name: str) -> int | None:
    try:
        return int(request.args.get(name, ""))
    except ValueError:
        return None


@pages.get("/activities")
@needs_volunteer
def activities():
    team_id, place_id = _int("team"), _int("place")
    team = g.db.get(Team, team_id) if team_id else None
    views = acts.upcoming(g.db, g.now, team=team, limit=LISTED)
    everything = acts.upcoming(g.db, g.now, limit=LISTED) if team else views
    g.loaded = _load_activities(everything)
    places = OrderedDict()
    teams = OrderedDict()
    for v in everything:
        a = v.shift.activity
        teams.setdefault(a.project.team_id, a.project.team.name)
        if a.place_id:
            places.setdefault(a.place_id, a.place.name)
    if place_id:
        views = [v for v in views if v.shift.activity.place_id == place_id]
    days: OrderedDict[str, list] = OrderedDict()
    for v in views:
        days.setdefault(local(v.shift.starts_at, "%m月%d日"), []).append(v)
    mine = {s.shift_id: s for s in acts.my_signups(g.db, g.visitor.volunteer, g.now)}
    return render("activities.html", days=days, places=places, teams=teams, team_id=team_id, place_id=place_id,
                  mine=mine, label=acts.place_label, note=NOTES.get(request.args.get("done")),
                  capped=len(everything) >= LISTED)


@pages.post("/activities/shifts/<int:shift_id>/signup")
@needs_volunteer
def shift_signup(shift_id: int):
    result = acts.sign_up(g.db, g.visitor.volunteer, shift_id, g.now, waitlist=request.form.get("waitlist") == "1",
                          approval_above=services().attendance_settings.approval_above)
    if result.shift is None:
        abort(404)
    g.db.commit()
    return redirect(url_for("pages.my_shifts", done=result.outcome))


@pages.get("/activities/mine")
@needs_volunteer
def my_shifts():
    signups = acts.my_signups(g.db, g.visitor.volunteer, g.now)
    ranks = {s.id: acts.waitlist_rank(g.db, s) for s in signups if s.state == "waitlisted"}
    return render("my_shifts.html", signups=signups, ranks=ranks, label=acts.place_label,
                  note=NOTES.get(request.args.get("done")))


@pages.post("/activities/signups/<int:signup_id>/cancel")
@needs_volunteer
def signup_cancel(signup_id: int):
    owner = g.db.scalar(select(SignUp.volunteer_id).where(SignUp.id == signup_id))
    if owner != g.visitor.volunteer.id:
        abort(404)  # someone else's sign-up, or none: nothing changes
    # The district's cut-off (ATTENDANCE_CUTOFF_HOURS), as in the chat: before it 请假, after it late notice.
    result = acts.cancel(g.db, g.visitor.volunteer, signup_id, g.now, cutoff=services().attendance_settings.cutoff)
    if result.outcome == "not_found":
        abort(404)
    g.db.commit()
    return redirect(url_for("pages.my_shifts", done="cancelled_late" if result.late else result.outcome))
