"""Small helpers shared by the console's list pages: paging and query-string building."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from flask import request

CHINA = ZoneInfo("Asia/Shanghai")
PAGE_SIZE = 50


def page_number() -> int:
    try:
        return max(1, min(int(request.args.get("page", 1)), 10_000))
    except ValueError:
        return 1


def paged(session, stmt, page: int, size: int = PAGE_SIZE):
    """One page of rows and whether there is a next one (no COUNT over big tables)."""
    rows = list(session.scalars(stmt.limit(size + 1).offset((page - 1) * size)))
    return rows[:size], len(rows) > size


def args_builder():
    """`args(page=2)`: the current query string with some values replaced."""
    def build(**changes) -> str:
        values = {k: v for k, v in request.args.items()}
        values.update({k: v for k, v in changes.items()})
        return urlencode({k: v for k, v in values.items() if v not in (None, "")})
    return build


def parse_day(text: str | None) -> date | None:
    try:
        return date.fromisoformat((text or "").strip()) if text else None
    except ValueError:
        return None


def day_bounds(day: date) -> tuple[datetime, datetime]:
    """The UTC instants where a local (Asia/Shanghai) day starts and ends."""
    start = datetime.combine(day, time(0), tzinfo=CHINA)
    return start, start + timedelta(days=1)


def local_today(now: datetime) -> date:
    return now.astimezone(CHINA).date()


def int_or_none(text) -> int | None:
    try:
        return int(text)
    except (TypeError, ValueError):
        return None
