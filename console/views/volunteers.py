"""Volunteers: search by name, number or the last four digits of the phone (personal data
masked; `console.views.contact` reveals a phone), sign-up approval, and a volunteer's
detail with hours, shifts and certificates."""

from __future__ import annotations

import re

from flask import Response, g, redirect, request, url_for
from sqlalchemy import func, select

from console.views import activities
from console.views.common import args_builder, int_or_none, page_number, paged, parse_day
from console.views.hours import STATES as HOUR_STATES
from console.web import audit, back, console, flash, render, services
from rules import access, masks, pii, volunteering
from rules import activities as activity_rules
from rules import certificates as certificate
from store.models import HourRecord, ServiceCertificate, Team, Volunteer

STATES = {"pending": "待审核", "active": "在册", "rejected": "未通过", "suspended": "暂停"}


def search_filter(stmt, q: str):
    """Four digits: the phone's last four (kept in clear for this); letters and digits: a
    volunteer number (prefix); anything else: part of the name. Not the whole phone: a
    search is a GET, and its URL would carry the number into access logs."""
    q = q.strip()
    if re.fullmatch(r"\d{4}", q):
        return stmt.where(Volunteer.phone_last4 == q)
    if re.fullmatch(r"[A-Za-z]{1,4}\d{2,}", q):
        return stmt.where(Volunteer.number.startswith(q.upper(), autoescape=True))
    return stmt.where(Volunteer.name.contains(q, autoescape=True))


@console.get("/volunteers")
def volunteers():
    scope = g.scope
    stmt = access.volunteers(scope)
    state = request.args.get("state", "")
    if state in STATES:
        stmt = stmt.where(Volunteer.state == state)
    team_id = int_or_none(request.args.get("team"))
    if team_id:
        stmt = stmt.where(Volunteer.team_id == team_id)
    q = (request.args.get("q") or "").strip()[:32]
    if q:
        stmt = search_filter(stmt, q)
    page = page_number()
    rows, has_next = paged(g.db, stmt.order_by(Volunteer.id.desc()), page)
    teams = list(g.db.scalars(access.teams(scope).order_by(Team.path)))
    team_names = {t.id: t.name for t in teams}
    totals = hour_totals_by_volunteer([v.id for v in rows])
    return render("volunteers.html", rows=rows, team_names=team_names, teams=teams, states=STATES,
                  totals=totals,
                  mask_phone=masks.phone, page=page, has_next=has_next, args=args_builder())


@console.get("/volunteers/<int:volunteer_id>")
def volunteer_detail(volunteer_id: int):
    volunteer = access.get(g.db, g.scope, Volunteer, volunteer_id)
    summary = volunteering.summary(g.db, volunteer, g.now, latest=20)
    certificates = list(g.db.scalars(select(ServiceCertificate).where(
        ServiceCertificate.volunteer_id == volunteer.id).order_by(ServiceCertificate.id.desc())))
    shifts = activities.signups_of(g.db, volunteer.id)
    return render("volunteer.html", v=volunteer, summary=summary, states=STATES, hour_states=HOUR_STATES,
                  record=activity_rules.reliability(g.db, volunteer.id, g.now),
                  masked_phone=masks.phone(volunteer.phone),
                  masked_guardian_phone=masks.phone(volunteer.guardian_phone),
                  masked_id=pii.mask_id_last4(volunteer.id_number_last4),
                  certificates=certificates, shifts=shifts)


@console.post("/volunteers/<int:volunteer_id>/decide")
def volunteer_decide(volunteer_id: int):
    volunteer = access.get(g.db, g.scope, Volunteer, volunteer_id)
    approve = request.form.get("decision") == "approve"
    reason = (request.form.get("reason") or "").strip()
    before = {"state": volunteer.state}
    try:
        done = volunteering.decide_volunteer(g.db, volunteer, approve=approve, now=g.now,
                                             coordinator=g.coordinator, reason=reason)
    except volunteering.VolunteerError as e:
        g.db.rollback()
        flash(str(e), "error")
        return back("console.volunteer_detail", volunteer_id=volunteer_id)
    if done:
        audit("volunteer.approve" if approve else "volunteer.reject", entity="volunteer",
              entity_id=volunteer.id, before=before, after={"state": volunteer.state}, reason=reason or None)
        g.db.commit()
        flash(f"已{'通过' if approve else '驳回'} {volunteer.name} 的注册。")
    else:
        flash("该注册已被处理过。", "error")
    return back("console.volunteer_detail", volunteer_id=volunteer_id)


def hour_totals_by_volunteer(volunteer_ids) -> dict[int, int]:
    if not volunteer_ids:
        return {}
    rows = g.db.execute(select(HourRecord.volunteer_id, func.sum(HourRecord.minutes)).where(
        HourRecord.volunteer_id.in_(volunteer_ids), HourRecord.state == "approved")
        .group_by(HourRecord.volunteer_id))
    return {vid: int(m or 0) for vid, m in rows}


@console.route("/volunteers/<int:volunteer_id>/certificate", methods=["GET", "POST"])
def certificate_form(volunteer_id: int):
    """Choose the period, then issue a numbered certificate and download its PDF."""
    volunteer = access.get(g.db, g.scope, Volunteer, volunteer_id)
    error = None
    if request.method == "POST":
        start, end = parse_day(request.form.get("start")), parse_day(request.form.get("end"))
        if start and end and end < start:
            error = "结束日期不能早于开始日期。"
        else:
            try:
                certificate.find_font(services().config.cjk_font)
            except certificate.FontMissing as e:
                return render("error.html", status=503, message=f"无法生成 PDF：{e}"), 503
            team = g.db.get(Team, g.scope.team_id)
            cert = certificate.issue(g.db, volunteer, team, coordinator_id=g.scope.coordinator_id, now=g.now,
                                     start=start, end=end, prefix=volunteering.rules().number_prefix)
            audit("certificate.issue", entity="volunteer", entity_id=volunteer.id,
                  after={"certificate": cert.number, "minutes": cert.minutes, "start": start, "end": end})
            g.db.commit()
            return redirect(url_for("console.certificate_pdf", certificate_id=cert.id))
    return render("certificate_form.html", v=volunteer, error=error), (400 if error else 200)


@console.get("/certificates/<int:certificate_id>.pdf")
def certificate_pdf(certificate_id: int):
    cert = g.db.get(ServiceCertificate, certificate_id)
    if cert is None:
        raise access.OutOfScope(certificate_id)
    volunteer = access.get(g.db, g.scope, Volunteer, cert.volunteer_id)
    try:
        body = certificate.render_pdf(cert, volunteer, g.db.get(Team, cert.team_id),
                                      certificate.find_font(services().config.cjk_font),
                                      verify_url=url_for("pages.verify", code=cert.verify_code, _external=True)
                                      if cert.verify_code else None)
    except certificate.FontMissing as e:
        return render("error.html", status=503, message=f"无法生成 PDF：{e}"), 503
    return Response(body, mimetype="application/pdf", headers={
        "Content-Disposition": f'inline; filename="{cert.number}.pdf"', "Cache-Control": "no-store"})


@console.post("/certificates/<int:certificate_id>/revoke")
def certificate_revoke(certificate_id: int):
    """Revoke an issued certificate: the public verify page says so from now on."""
    cert = g.db.get(ServiceCertificate, certificate_id)
    if cert is None:
        raise access.OutOfScope(certificate_id)
    volunteer = access.get(g.db, g.scope, Volunteer, cert.volunteer_id)
    reason = (request.form.get("reason") or "").strip()[:200]
    if certificate.revoke(g.db, cert, now=g.now, reason=reason):
        audit("certificate.revoke", entity="volunteer", entity_id=volunteer.id,
              after={"certificate": cert.number, "reason": reason})
        flash(f"证明 {cert.number} 已撤销。")
    g.db.commit()
    return redirect(url_for("console.volunteer_detail", volunteer_id=volunteer.id))
