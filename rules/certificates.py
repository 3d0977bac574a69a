"""The certificate of service (志愿服务记录证明) as a PDF.

It carries what the national rules on recording volunteer service ask for: the
volunteer's name, masked ID number and volunteer number, the hours served and what the
service was, the issuing team, a certificate number and the date of issue. The figures are
taken from approved hour records and stored with the certificate's number
(`ServiceCertificate`), so a reprint shows exactly what was issued.

Each certificate also carries a random verification code and its QR: anyone can check it
on the public verify page (/m/verify/<code>: issuer, masked name, hours, period, date, and
whether it was revoked). Coordinators issue certificates in the console; a volunteer asks
for their own on the pages (`issue_for_self`, once per period a day: a repeated request
gets the same certificate).

Chinese text needs a CJK font on the machine: `VOLBOT_CJK_FONT`, else the first of the
usual Debian paths (`apt-get install fonts-wqy-microhei`).
"""

from __future__ import annotations

import io
import secrets
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import segno
from fpdf import FPDF
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from rules import pii
from store.models import HourRecord, ServiceCertificate, Team, Volunteer

CHINA = ZoneInfo("Asia/Shanghai")
FONT_CANDIDATES = (
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/opentype/noto/NotoSerifCJK-Regular.ttc",
    "/usr/share/fonts/truetype/arphic/uming.ttc",
)
SERVICE_LINES = 8
# Verification codes: 12 characters without look-alikes (0/O, 1/I/L), about 60 bits.
CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
CODE_LENGTH = 12


class FontMissing(RuntimeError):
    pass


def find_font(configured: str | None = None) -> Path:
    """The font to print with: `configured` (VOLBOT_CJK_FONT) when given, else the first
    Debian CJK font installed."""
    if configured:
        if Path(configured).is_file():
            return Path(configured)
        raise FontMissing(f"VOLBOT_CJK_FONT={configured} does not exist")
    for candidate in FONT_CANDIDATES:
        if Path(candidate).is_file():
            return Path(candidate)
    raise FontMissing("no CJK font found for the certificate: install fonts-wqy-microhei "
                      "(apt-get install fonts-wqy-microhei) or set VOLBOT_CJK_FONT to a .ttf/.ttc file")


@dataclass
class ServiceSummary:
    minutes: int
    lines: list[tuple[str, int]]  # what the service was, minutes


def service_summary(session: Session, volunteer_id: int, start: date | None, end: date | None) -> ServiceSummary:
    """Approved minutes in the period (local dates, inclusive) and the main kinds of service."""
    conds = [HourRecord.volunteer_id == volunteer_id, HourRecord.state == "approved"]
    if start:
        conds.append(HourRecord.started_at >= datetime.combine(start, time(0), tzinfo=CHINA))
    if end:
        conds.append(HourRecord.started_at < datetime.combine(end + timedelta(days=1), time(0), tzinfo=CHINA))
    rows = session.execute(select(HourRecord.description, func.sum(HourRecord.minutes)).where(*conds)
                           .group_by(HourRecord.description).order_by(func.sum(HourRecord.minutes).desc())).all()
    total = sum(int(m) for _, m in rows)
    lines = [((d or "志愿服务").strip()[:40], int(m)) for d, m in rows[:SERVICE_LINES]]
    rest = sum(int(m) for _, m in rows[SERVICE_LINES:])
    if rest:
        lines.append(("其他志愿服务", rest))
    return ServiceSummary(total, lines)


def issue(session: Session, volunteer: Volunteer, team: Team, *, coordinator_id: int | None, now: datetime,
          start: date | None, end: date | None, prefix: str = "KW") -> ServiceCertificate:
    summary = service_summary(session, volunteer.id, start, end)
    today = now.astimezone(CHINA).date()
    cert = ServiceCertificate(
        number=f"pending-{volunteer.id}-{now.timestamp()}", volunteer_id=volunteer.id, team_id=team.id,
        issued_by=coordinator_id, minutes=summary.minutes, period_start=start, period_end=end,
        services="\n".join(f"{what}\t{m}" for what, m in summary.lines), issued_on=today, created_at=now)
    cert.verify_code = new_code()
    session.add(cert)
    session.flush()
    # The row id makes the number unique without a counter to race on.
    cert.number = f"{prefix}ZM{today.year}{cert.id:06d}"
    return cert


def new_code() -> str:
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


def format_code(code: str | None) -> str:
    """ABCD-EFGH-JKMN: easier to read out and type."""
    code = code or ""
    return "-".join(code[i:i + 4] for i in range(0, len(code), 4))


def normalise_code(text: str) -> str:
    return "".join(ch for ch in (text or "").upper() if ch in CODE_ALPHABET)[:CODE_LENGTH]


def by_code(session: Session, text: str) -> ServiceCertificate | None:
    code = normalise_code(text)
    if len(code) != CODE_LENGTH:
        return None
    return session.scalar(select(ServiceCertificate).where(ServiceCertificate.verify_code == code))


def issue_for_self(session: Session, volunteer: Volunteer, *, now: datetime, start: date | None, end: date | None,
                   prefix: str = "KW") -> ServiceCertificate:
    """A volunteer's own request, issued in the name of their team: the same period asked
    again on the same day gets the certificate already issued (a double tap, a retry)."""
    today = now.astimezone(CHINA).date()
    same = session.scalar(select(ServiceCertificate).where(
        ServiceCertificate.volunteer_id == volunteer.id, ServiceCertificate.issued_on == today,
        ServiceCertificate.issued_by.is_(None), ServiceCertificate.revoked_at.is_(None),
        ServiceCertificate.period_start.is_(None) if start is None else ServiceCertificate.period_start == start,
        ServiceCertificate.period_end.is_(None) if end is None else ServiceCertificate.period_end == end,
    ).limit(1))
    if same is not None:
        return same
    return issue(session, volunteer, volunteer.team, coordinator_id=None, now=now, start=start, end=end,
                 prefix=prefix)


def revoke(session: Session, cert: ServiceCertificate, *, now: datetime, reason: str) -> bool:
    """Mark a certificate revoked (the verify page then says so); False if it already was."""
    if cert.revoked_at is not None:
        return False
    cert.revoked_at, cert.revoked_reason = now, (reason or "").strip()[:200] or None
    session.flush()
    return True


def period_text(cert: ServiceCertificate) -> str:
    if cert.period_start or cert.period_end:
        return f"{cert.period_start or '注册之日'} 至 {cert.period_end or cert.issued_on}"
    return f"注册之日至 {cert.issued_on}"


def qr_png(text: str, scale: int = 6) -> bytes:
    out = io.BytesIO()
    segno.make(text, error="m").save(out, kind="png", scale=scale, border=2)
    return out.getvalue()


def _hours(minutes: int) -> str:
    return f"{minutes / 60:.1f}".rstrip("0").rstrip(".")


def render_pdf(cert: ServiceCertificate, volunteer: Volunteer, team: Team, font: Path | None = None,
               verify_url: str | None = None) -> bytes:
    """The PDF; with `verify_url` (the public verify page of this certificate's code) it
    carries the code and its QR."""
    font = font or find_font()
    pdf = FPDF(format="A4")
    pdf.set_title(f"志愿服务记录证明 {cert.number}")
    pdf.set_author(team.name)
    pdf.add_font("cjk", "", str(font))
    pdf.add_page()
    pdf.set_margins(25, 25, 25)
    pdf.set_font("cjk", size=22)
    pdf.cell(0, 20, "志愿服务记录证明", align="C", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("cjk", size=10)
    pdf.cell(0, 8, f"证明编号：{cert.number}", align="R", new_x="LMARGIN", new_y="NEXT")
    pdf.ln(4)
    pdf.set_font("cjk", size=12)
    period = period_text(cert)
    facts = [
        ("姓名", volunteer.name),
        ("身份证号", pii.mask_id_last4(volunteer.id_number_last4)),
        ("志愿者编号", volunteer.number),
        ("所属队伍", volunteer.team.name if volunteer.team else ""),
        ("统计期间", period),
        ("累计志愿服务时长", f"{_hours(cert.minutes)} 小时"),
    ]
    for label, value in facts:
        pdf.cell(45, 10, label, border=1)
        pdf.cell(0, 10, str(value), border=1, new_x="LMARGIN", new_y="NEXT")
    pdf.ln(6)
    pdf.cell(0, 9, "服务内容：", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("cjk", size=11)
    lines = [ln.split("\t") for ln in cert.services.splitlines() if "\t" in ln]
    if not lines:
        pdf.cell(0, 8, "（统计期间内无经认证的服务时长）", new_x="LMARGIN", new_y="NEXT")
    for what, minutes in lines:
        pdf.cell(115, 8, what, border="B")
        pdf.cell(0, 8, f"{_hours(int(minutes))} 小时", border="B", align="R", new_x="LMARGIN", new_y="NEXT")
    pdf.ln(10)
    pdf.set_font("cjk", size=12)
    pdf.multi_cell(0, 8, f"兹证明 {volunteer.name} 同志（志愿者编号 {volunteer.number}）在上述期间参加志愿服务，"
                         f"经认证的服务时长共计 {_hours(cert.minutes)} 小时。以上记录真实有效。",
                   new_x="LMARGIN", new_y="NEXT")
    pdf.ln(16)
    pdf.cell(0, 9, f"出具单位：{team.name}", align="R", new_x="LMARGIN", new_y="NEXT")
    pdf.cell(0, 9, f"出具日期：{cert.issued_on:%Y年%m月%d日}", align="R", new_x="LMARGIN", new_y="NEXT")
    pdf.ln(10)
    pdf.set_font("cjk", size=9)
    pdf.multi_cell(0, 6, "说明：本证明依据志愿服务信息系统中经审核认证的服务记录出具；身份证号已作脱敏处理。"
                         "可凭证明编号向出具单位查询核实。", new_x="LMARGIN", new_y="NEXT")
    if verify_url and cert.verify_code:
        pdf.ln(4)
        top = pdf.get_y()
        pdf.image(io.BytesIO(qr_png(verify_url)), x=pdf.l_margin, y=top, w=30, h=30)
        pdf.set_xy(pdf.l_margin + 34, top + 4)
        pdf.multi_cell(0, 6, f"验证码：{format_code(cert.verify_code)}\n扫描二维码或访问下列网址核验本证明：\n{verify_url}")
    return bytes(pdf.output())
