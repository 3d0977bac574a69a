"""Announcements (政府信息推送): write one to an audience within your subtree, preview it as
the phone shows it, submit it for approval a level up (ANNOUNCEMENT_APPROVAL), decide the
ones written below you, and watch each one's notices and mass send go out.

The rules are `rules.announcements`'s; consent and WeChat's answers are `rules.notices`'s.
"""

from __future__ import annotations

from flask import abort, g, jsonify, redirect, request, url_for
from sqlalchemy import select

from console.web import audit, console, flash, render, services
from rules import announcements as rules
from rules import notices
from rules.access import communities, teams
from rules.audit import snapshot
from store.models import Announcement, Community, Team

AUDITED = ("subject", "audience", "audience_ref", "state", "mass_send", "mass_state", "recipients", "skipped")
STATES = {"draft": "草稿", "submitted": "待审核", "approved": "已批准", "rejected": "未通过", "sent": "已发送"}
MASS = {"queued": "群发排队中", "sent": "群发已发出", "failed": "群发失败"}


def _catalog():
    return notices.catalog_for(services().config.template_ids)


def _get(announcement_id: int) -> Announcement:
    a = g.db.get(Announcement, announcement_id)
    if a is None or a.team_id not in g.scope.team_ids:
        abort(404)
    return a


def _settings():
    config = services().config
    return config.announcement_approval, config.mass_send_monthly


@console.get("/announcements")
def announcements():
    rows = list(g.db.scalars(rules.visible(g.db, g.scope).order_by(Announcement.id.desc()).limit(100)))
    waiting = [a for a in rows if a.state == "submitted" and rules.may_decide(g.db, a, g.scope)]
    return render("announcements.html", rows=rows, waiting=waiting, states=STATES, mass=MASS,
                  audiences=rules.AUDIENCE_NAMES,
                  communities=list(g.db.scalars(communities(g.scope).order_by(Community.name))),
                  teams=list(g.db.scalars(teams(g.scope).order_by(Team.path))),
                  used=rules.mass_sends_this_month(g.db, g.now), monthly=_settings()[1],
                  subject_max=rules.SUBJECT_MAX, body_max=rules.BODY_MAX)


@console.post("/announcements")
def announcement_new():
    form = request.form
    audience = form.get("audience") or ""
    ref = {"community": form.get("community"), "team": form.get("team"), "skill": form.get("skill")}.get(audience, "")
    try:
        a = rules.draft(g.db, g.scope, subject=form.get("subject") or "", body=form.get("body") or "",
                        audience=audience, audience_ref=ref or "", mass_send=form.get("mass_send") == "1", now=g.now)
    except rules.AnnouncementError as e:
        g.db.rollback()
        flash(str(e), "error")
        return redirect(url_for("console.announcements"))
    audit("announcement.draft", entity="announcement", entity_id=a.id, after=snapshot(a, AUDITED))
    g.db.commit()
    flash("已保存草稿，请预览后提交。")
    return redirect(url_for("console.announcement", announcement_id=a.id))


@console.get("/announcements/<int:announcement_id>")
def announcement(announcement_id: int):
    a = _get(announcement_id)
    return render("announcement.html", a=a, preview=rules.preview(g.db, a, _catalog()), states=STATES, mass=MASS,
                  progress=rules.progress(g.db, a), author=rules.author_name(g.db, a),
                  audience=rules.AUDIENCE_NAMES.get(a.audience, a.audience),
                  can_submit=a.state in ("draft", "rejected") and a.author_id == g.scope.coordinator_id,
                  can_decide=a.state == "submitted" and rules.may_decide(g.db, a, g.scope),
                  approval=_settings()[0])


def _act(announcement_id: int, action: str, apply, done: str):
    a = _get(announcement_id)
    before = snapshot(a, AUDITED)
    try:
        apply(a)
    except rules.AnnouncementError as e:
        g.db.rollback()
        flash(str(e), "error")
        return redirect(url_for("console.announcement", announcement_id=announcement_id))
    audit(action, entity="announcement", entity_id=a.id, before=before, after=snapshot(a, AUDITED))
    g.db.commit()
    flash(done)
    return redirect(url_for("console.announcement", announcement_id=a.id))


@console.post("/announcements/<int:announcement_id>/submit")
def announcement_submit(announcement_id: int):
    approval, monthly = _settings()
    if g.db.scalar(select(Announcement.author_id).where(Announcement.id == announcement_id)) != g.scope.coordinator_id:
        abort(403)
    return _act(announcement_id, "announcement.submit",
                lambda a: rules.submit(g.db, a, approval=approval, monthly=monthly, now=g.now, catalog=_catalog()),
                "已提交上级审核。" if approval == "parent" else "已发送。")


@console.post("/announcements/<int:announcement_id>/decide")
def announcement_decide(announcement_id: int):
    approve = request.form.get("decision") == "approve"
    return _act(announcement_id, "announcement.approve" if approve else "announcement.reject",
                lambda a: rules.decide(g.db, a, g.scope, approve=approve, note=request.form.get("note") or "",
                                       monthly=_settings()[1], now=g.now, catalog=_catalog()),
                "已批准，正在发送。" if approve else "已退回。")


@console.get("/announcements/<int:announcement_id>/progress.json")
def announcement_progress(announcement_id: int):
    """The notices of one announcement by outcome (the console's progress bar polls it)."""
    p = rules.progress(g.db, _get(announcement_id))
    total = p["total"]
    reasons = "，".join(f"{said} {n}" for _, said, n in p["outcomes"] if said)
    return jsonify({**p, "outcomes": [list(o) for o in p["outcomes"]], "reasons": reasons,
                    "failed": p["states"].get("failed", 0), "finished": p["done"] == total,
                    "percent": 100 if total == 0 else int(p["done"] * 100 / total)})
