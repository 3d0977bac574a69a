"""The certificate of service (志愿服务记录证明) as a PDF.

It carries what the national rules on recording volunteer service ask for: the
volunteer's name, masked ID number and volunteer number, the hours served and what the
service was, the issuing team, a certificate number and the date of issue. The figures are
taken from approved hour records and stored with the certificate's number
(`ServiceCertificate`), so a reprint shows exactly what was issued.

Chinese text needs a CJK font on the machine: `VOLBOT_CJK_FONT`, else the first of the
usual Debian paths (`apt-get install fonts-wqy-microhei`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

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
    session.add(cert)
    session.flush()
    # The row id makes the number unique without a counter to race on.
    cert.number = f"{prefix}ZM{today.year}{cert.id:06d}"
    return cert


def _hours(minutes: int) -> str:
    return f"{minutes / 60:.1f}".rstrip("0").rstrip(".")


def render_pdf(cert: ServiceCertificate, volunteer: Volunteer, team: Team, font: Path | None = None) -> bytes:
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
    if cert.period_start or cert.period_end:
        period = f"{cert.period_start or '注册之日'} 至 {cert.period_end or cert.issued_on}"
    else:
        period = f"注册之日至 {cert.issued_on}"
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
                         "可凭证明编号向出具单位查询核实。")
    return bytes(pdf.output())
