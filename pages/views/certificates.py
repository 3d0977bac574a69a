"""证书: a volunteer asks for a 志愿服务记录证明 of a period, downloads its PDF (the one the
console prints, `rules.certificates`), and anyone can check a certificate on the public
verify page by its code or QR: issuer, masked name, hours, period, date, revoked or not.
"""

from __future__ import annotations

import logging
from datetime import date

from flask import Response, abort, g, redirect, request, url_for
from sqlalchemy import select

from pages.web import CHINA, error, needs_volunteer, pages, render, services
from rules import certificates, masks, volunteering
from store.models import ServiceCertificate, Team, Volunteer

log = logging.getLogger("volbot.pages")


def verify_url(cert: ServiceCertificate) -> str:
    return url_for("pages.verify", code=cert.verify_code, _external=True)


def _day(text: str | None) -> date | None:
    try:
        return date.fromisoformat((text or "").strip())
    except ValueError:
        return None


def _period(today: date) -> tuple[date | None, date | None] | None:
    """The period asked for (None, None: since registration), or None when it is wrong."""
    choice = request.form.get("period", "all")
    if choice == "all":
        return None, None
    if choice == "this_year":
        return date(today.year, 1, 1), today
    if choice == "last_year":
        return date(today.year - 1, 1, 1), date(today.year - 1, 12, 31)
    start, end = _day(request.form.get("start")), _day(request.form.get("end"))
    if start is None or end is None or end < start or end > today:
        return None
    return start, end


def _mine(cert_id: int) -> ServiceCertificate:
    cert = g.db.get(ServiceCertificate, cert_id)
    if cert is None or cert.volunteer_id != g.visitor.volunteer.id:
        abort(404)
    return cert


def _listing(error_text: str | None = None):
    mine = g.db.scalars(select(ServiceCertificate).where(ServiceCertificate.volunteer_id == g.visitor.volunteer.id)
                        .order_by(ServiceCertificate.id.desc()).limit(50)).all()
    return render("certificates.html", certs=mine, period=certificates.period_text, code=certificates.format_code,
                  today=g.now.astimezone(CHINA).date(), error=error_text)


@pages.get("/certificates")
@needs_volunteer
def certificates_page():
    return _listing()


@pages.post("/certificates")
@needs_volunteer
def certificate_request():
    period = _period(g.now.astimezone(CHINA).date())
    if period is None:
        return _listing("请选择正确的起止日期（结束日期不能早于开始日期，也不能晚于今天）。"), 400
    cert = certificates.issue_for_self(g.db, g.visitor.volunteer, now=g.now, start=period[0], end=period[1],
                                       prefix=volunteering.rules().number_prefix)
    g.db.commit()
    return redirect(url_for("pages.certificate", cert_id=cert.id))


@pages.get("/certificates/<int:cert_id>")
@needs_volunteer
def certificate(cert_id: int):
    cert = _mine(cert_id)
    return render("certificate.html", c=cert, period=certificates.period_text(cert),
                  code=certificates.format_code(cert.verify_code), url=verify_url(cert) if cert.verify_code else "")


@pages.get("/certificates/<int:cert_id>.pdf")
@needs_volunteer
def certificate_pdf(cert_id: int):
    cert = _mine(cert_id)
    try:
        font = certificates.find_font(services().config.cjk_font)
    except certificates.FontMissing as e:
        log.warning("certificate PDF: %s", e)
        return error(503, "暂时无法生成 PDF，请稍后再试或联系所在队伍。")
    body = certificates.render_pdf(cert, g.visitor.volunteer, g.db.get(Team, cert.team_id), font,
                                   verify_url=verify_url(cert) if cert.verify_code else None)
    return Response(body, mimetype="application/pdf", headers={
        "Content-Disposition": f'inline; filename="{cert.number}.pdf"', "Cache-Control": "no-store"})


# ---- public: anyone may check a certificate ------------------------------------------------------

@pages.get("/verify")
def verify_form():
    code = request.args.get("code")
    if code:
        return redirect(url_for("pages.verify", code=certificates.normalise_code(code) or "-"))
    return render("verify.html", cert=None, asked=False)


@pages.get("/verify/<code>")
def verify(code: str):
    cert = certificates.by_code(g.db, code)
    if cert is None:
        return render("verify.html", cert=None, asked=True), 404
    volunteer = g.db.get(Volunteer, cert.volunteer_id)
    return render("verify.html", cert=cert, asked=True, name=masks.name(volunteer.name),
                  issuer=g.db.get(Team, cert.team_id).name, period=certificates.period_text(cert),
                  code=certificates.format_code(cert.verify_code))


@pages.get("/verify/<code>/qr.png")
def verify_qr(code: str):
    cert = certificates.by_code(g.db, code)
    if cert is None:
        abort(404)
    return Response(certificates.qr_png(verify_url(cert)), mimetype="image/png",
                    headers={"Cache-Control": "public, max-age=86400"})

