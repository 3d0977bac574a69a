"""我的志愿记录: every hour record of a year (state, source, approver), the star level and
the way to the next, and the time-bank passbook (存入 / 支出 / 结余 after each entry) of the
same year; the year's records as CSV.

Totals come from `rules.volunteering.summary`; the passbook from the ledger's own
`rules.timebank.statement` and `balance`, the balance after each entry being worked back
from today's balance (entries never change, so this is exact).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
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
KINDS = {"deposit": "存入", "spend": "支出", "reversal": "冲正"}
PAGE = 100  # records (and passbook lines) a page
PASSBOOK_SHOWN = 10  # the latest passbook lines on the records page; the rest on /m/passbook


@dataclass
class PassbookLine:
    at: datetime
    kind: str
    reason: str
    credit: int
    debit: int
    balance: int


def year_bounds(year: int) -> tuple[datetime, datetime]:
    return datetime(year, 1, 1, tzinfo=CHINA), datetime(year + 1, 1, 1, tzinfo=CHINA)


def years_with_records(session, volunteer_id: int, this_year: int) -> list[int]:
    first, last = session.execute(select(func.min(HourRecord.started_at), func.max(HourRecord.started_at))
                                  .where(HourRecord.volunteer_id == volunteer_id)).one()
    if first is None:
        return [this_year]
    lo, hi = (local(t, "%Y") for t in (first, last))
    return list(range(max(int(hi), this_year), int(lo) - 1, -1))


def year_records(session, volunteer_id: int, year: int, offset: int = 0, limit: int | None = PAGE):
    """(record, approver's name) of the year, newest first."""
    start, end = year_bounds(year)
    approver = aliased(Coordinator)
    q = (select(HourRecord, approver.name).outerjoin(approver, approver.id == HourRecord.decided_by)
         .where(HourRecord.volunteer_id == volunteer_id, HourRecord.started_at >= start, HourRecord.started_at < end)
         .order_by(HourRecord.started_at.desc(), HourRecord.id.desc()).offset(offset))
    if limit is not None:
        q = q.limit(limit + 1)  # one more: is there a next page?
    return session.execute(q).all()


def _entries_back_to(session, volunteer, start: datetime):
    """The ledger's entries, newest first, at least back to `start`: read in growing pages
    through `timebank.statement`, so this year's passbook does not read every year's."""
    limit = 256
    while True:
        rows = timebank.statement(session, volunteer, limit=limit)
        if len(rows) < limit or aware(rows[-1][0].created_at) < start:
            return rows
        limit *= 4


def passbook(session, volunteer, year: int) -> list[PassbookLine]:
    """The year's ledger lines, newest first, each with the balance after it."""
    balance = timebank.balance(session, volunteer)
    start, end = year_bounds(year)
    lines = []
    for tx, minutes in _entries_back_to(session, volunteer, start):
        at = aware(tx.created_at)
        if at < start:
            break
        if at < end:
            kind = KINDS.get(tx.kind) or ("存入" if minutes > 0 else "支出")
            lines.append(PassbookLine(at, kind, tx.reason, max(minutes, 0), max(-minutes, 0), balance))
        balance -= minutes
    return lines


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
    lines = passbook(g.db, volunteer, year)
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
    lines = passbook(g.db, volunteer, year)
    return render("passbook.html", year=year, page=page, more=len(lines) > page * PAGE,
                  years=years_with_records(g.db, volunteer.id, year), balance=timebank.balance(g.db, volunteer),
                  lines=lines[(page - 1) * PAGE:page * PAGE])


@pages.get("/records.csv")
@needs_volunteer
def records_csv():
    volunteer = g.visitor.volunteer
    year = _year()
    out = io.StringIO()
    out.write("\ufeff")  # Excel opens UTF-8 with a BOM
    w = csv.writer(out)
    w.writerow(["日期", "开始", "结束", "时长（分钟）", "内容", "来源", "状态", "审核人", "审核时间"])
    for record, approver in year_records(g.db, volunteer.id, year, limit=None):
        w.writerow([local(record.started_at, "%Y-%m-%d"), local(record.started_at, "%H:%M"),
                    local(record.ended_at, "%H:%M"), record.minutes, _cell(record.description),
                    SOURCES.get(record.source, record.source), STATES.get(record.state, record.state),
                    _cell(approver or ""), local(record.decided_at)])
    return Response(out.getvalue(), mimetype="text/csv", headers={
        "Content-Disposition": f'attachment; filename="volunteer-hours-{year}.csv"',
        "Cache-Control": "no-store"})


def _cell(text: str) -> str:
    """No spreadsheet formula from a typed description (CSV injection)."""
    text = (text or "").replace("\n", " ")
    return "'" + text if text[:1] in ("=", "+", "-", "@") else text

