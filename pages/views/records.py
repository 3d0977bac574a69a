"""我的志愿记录: every hour record of a year (state, source, approver), the star level and
the way to the next, and the time-bank passbook (存入 / 支出 / 结余 after each entry) of the
same year; the year's records as CSV.

Totals come from `rules.volunteering.summary`; the passbook from the ledger's own
`rules.timebank.passbook` (the balance after each entry summed by the database).
"""

from __future__ import annotations

import csv
import io
from datetime import datetime, timezone

from flask import Response, g, request
from sqlalchemy import func, select
from sqlalchemy.orm import aliased

from pages.web import CHINA, local, needs_volunteer, pages, render
from rules import timebank, volunteering
from store.models import Coordinator, HourRecord

STATES = {"pending": "待审核", "approved": "已认证", "rejected": "未通过"}
SOURCES = {"activity": "活动签到", "order": "服务订单", "manual": "补录"}
# Ledger kinds; a kind added later is shown by the sign of its amount (存入 / 支出).
PAGE = 100  # records (and passbook lines) a page
PASSBOOK_SHOWN = 10  # the latest passbook lines on the records page; the rest on /m/passbook


def year_bounds(year: int) -> tuple[datetime, datetime]:
    return datetime(year, 1, 1, tzinfo=CHINA), datetime(year + 1, 1, 1, tzinfo=CHINA)


def years_with_records(session, volunteer_id: int, this_year: int) -> list[int]:
    first, last = session.execute(select(func.min(HourRecord.started_at), func.max(HourRecord.started_at))
                                  .where(HourRecord.volunteer_id == volunteer_id)).one()
    if first is None:
        return [this_year]
    lo, hi = (local(t, "%Y") for t in (first, last))
    return list(range(max(int(hi), this_year), int(lo) - 1, -1))


def year_records(session, volunteer_id: int, year: int, offset: int = 0):
    """(record, approver's name) of the year, newest first: a page, and one more row (is
    there a next page?)."""
    start, end = year_bounds(year)
    approver = aliased(Coordinator)
    return session.execute(
        select(HourRecord, approver.name).outerjoin(approver, approver.id == HourRecord.decided_by)
        .where(HourRecord.volunteer_id == volunteer_id, HourRecord.started_at >= start, HourRecord.started_at < end)
        .order_by(HourRecord.started_at.desc(), HourRecord.id.desc()).offset(offset).limit(PAGE + 1)).all()


def passbook(session, volunteer, year: int, offset: int = 0, limit: int | None = None) -> list[dict]:
    """The year's ledger lines, newest first, each with the balance after it
    (`rules.timebank.passbook_year`), labelled 存入 / 支出 / 赠与 / 捐赠 / 资助 for the page."""
    return [{"at": aware(line.at), "kind": line.label, "reason": line.reason, "credit": max(line.minutes, 0),
             "debit": max(-line.minutes, 0), "balance": line.balance_after}
            for line in timebank.passbook_year(session, volunteer, year, newest_first=True, offset=offset,
                                               limit=limit)]


def aware(at: datetime) -> datetime:
    """SQLite hands back naive UTC times; PostgreSQL aware ones."""
    return at if at.tzinfo else at.replace(tzinfo=timezone.utc)


def _year() -> int:
    this_year = g.now.astimezone(CHINA).year
    try:
        year = int(request.args.get("year", this_year))
    except ValueError:
        return this_year
    return year if 2000 <= year <= this_year + 1 else this_year


@pages.get("/records")
@needs_volunteer
def records():
    volunteer = g.visitor.volunteer
    year, page = _year(), _page()
    summary = volunteering.summary(g.db, volunteer, g.now, latest=0)
    rule = volunteering.rules()
    stars = rule.stars
    level = summary.star
    floor = stars[level - 1] * 60 if level else 0
    ceiling = stars[level] * 60 if level < len(stars) else None
    progress = 100 if ceiling is None else int(100 * (summary.approved - floor) / max(1, ceiling - floor))
    rows = year_records(g.db, volunteer.id, year, offset=(page - 1) * PAGE)
    more = len(rows) > PAGE
    lines = passbook(g.db, volunteer, year, limit=PASSBOOK_SHOWN + 1)
    return render("records.html", v=volunteer, s=summary, year=year, page=page, more=more,
                  years=years_with_records(g.db, volunteer.id, year), rows=rows[:PAGE],
                  progress=max(0, min(progress, 100)), next_star=level + 1 if ceiling else None,
                  lines=lines[:PASSBOOK_SHOWN], more_lines=len(lines) > PASSBOOK_SHOWN, states=STATES,
                  sources=SOURCES)


def _page() -> int:
    try:
        return max(1, min(int(request.args.get("page", 1)), 10_000))
    except ValueError:
        return 1


@pages.get("/passbook")
@needs_volunteer
def passbook_page():
    """The year's whole passbook, a hundred lines a page."""
    volunteer, year, page = g.visitor.volunteer, _year(), _page()
    lines = passbook(g.db, volunteer, year, offset=(page - 1) * PAGE, limit=PAGE + 1)
    return render("passbook.html", year=year, page=page, more=len(lines) > PAGE,
                  years=years_with_records(g.db, volunteer.id, year), balance=timebank.balance(g.db, volunteer),
                  lines=lines[:PAGE])


@pages.get("/records.csv")
@needs_volunteer
def records_csv():
    volunteer = g.visitor.volunteer
    year = _year()
    out = io.StringIO()
    out.write("\ufeff")  # Excel opens UTF-8 with a BOM
    w = csv.writer(out)
    w.writerow(["日期", "开始", "结束", "时长（分钟）", "内容", "来源", "状态", "审核人", "审核时间"])
    start, end = year_bounds(year)
    approver = aliased(Coordinator)
    # Columns, not entities: a year of a busy volunteer is a thousand rows.
    rows = g.db.execute(
        select(HourRecord.started_at, HourRecord.ended_at, HourRecord.minutes, HourRecord.description,
               HourRecord.source, HourRecord.state, approver.name, HourRecord.decided_at)
        .outerjoin(approver, approver.id == HourRecord.decided_by)
        .where(HourRecord.volunteer_id == volunteer.id, HourRecord.started_at >= start, HourRecord.started_at < end)
        .order_by(HourRecord.started_at.desc(), HourRecord.id.desc()))
    for started, ended, minutes, description, source, state, who, decided in rows:
        w.writerow([local(started, "%Y-%m-%d"), local(started, "%H:%M"), local(ended, "%H:%M"), minutes,
                    _cell(description), SOURCES.get(source, source), STATES.get(state, state), _cell(who or ""),
                    local(decided)])
    return Response(out.getvalue(), mimetype="text/csv", headers={
        "Content-Disposition": f'attachment; filename="volunteer-hours-{year}.csv"',
        "Cache-Control": "no-store"})


def _cell(text: str) -> str:
    """No spreadsheet formula from a typed description (CSV injection)."""
    text = (text or "").replace("\n", " ")
    return "'" + text if text[:1] in ("=", "+", "-", "@") else text

