"""Reports with charts, their CSV and XLSX exports, and the annual rankings.

The hour reports read running totals kept where hours are approved (`rules.reports`), so
even a district-wide first load is computed in well under the 200 ms target. Each computed
table is still kept in Redis for `CACHE_SECONDS` per (team, year, report) — it spares the
orders' per-month medians on reloads — shown with the time it was computed, and recomputed
on demand (`?fresh=1`, the page's 刷新 link). Redis may lose it: then it is computed again.
"""

from __future__ import annotations

import json
from datetime import datetime
from urllib.parse import quote

from flask import Response, abort, g, request

from console import charts, exports
from console.views.common import local_today
from console.web import audit, console, render, services
from rules import access, reports


def _year() -> int:
    this_year = local_today(g.now).year
    try:
        year = int(request.args.get("year", this_year))
    except ValueError:
        return this_year
    return year if 2000 <= year <= this_year + 1 else this_year


CACHE_SECONDS = 600


def table(key: str, year: int, fresh: bool = False) -> tuple[reports.Table, datetime]:
    """The report, from Redis when computed in the last `CACHE_SECONDS`."""
    redis = services().redis
    cache_key = f"console:report:{g.scope.team_id}:{year}:{key}"
    cached = None if fresh else redis.get(cache_key)
    if cached:
        data = json.loads(cached)
        return reports.Table(**data["table"]), datetime.fromisoformat(data["at"])
    result = reports.REPORTS[key](g.db, g.scope, year)
    redis.set(cache_key, json.dumps({"table": result.__dict__, "at": g.now.isoformat()}, ensure_ascii=False),
              ex=CACHE_SECONDS)
    return result, g.now


def _allowed(key: str) -> bool:
    return key in reports.REPORTS and (key not in reports.RANKINGS or g.scope.can("rankings.view"))


def chart_for(table: reports.Table):
    months = [f"{i}月" for i in range(1, 13)]
    if table.key == "hours":
        top = table.rows[:6]
        series = [(r[0], r[1:13]) for r in top]
        if len(table.rows) > 6:
            series.append(("其他", [sum(r[1 + i] for r in table.rows[6:]) for i in range(12)]))
        return charts.bars(months, series, table.title)
    if table.key == "orders":
        return charts.hbars([r[0] for r in table.rows], [r[-1] for r in table.rows], table.title)
    if table.key == "response":
        cats = [r[0] for r in table.rows]
        return charts.lines(cats, [("接单中位数", [r[3] if r[3] != "" else None for r in table.rows]),
                                   ("完成中位数", [r[6] if r[6] != "" else None for r in table.rows])], table.title)
    if table.key == "satisfaction":
        return charts.hbars([r[0] for r in table.rows], [r[-1] for r in table.rows], table.title)
    if table.key == "volunteer_ranking":
        top = table.rows[:10]
        return charts.hbars([f"{r[2]} {r[1]}" for r in top], [r[4] for r in top], table.title)
    if table.key == "project_ranking":
        top = table.rows[:10]
        return charts.hbars([r[1] for r in top], [r[4] for r in top], table.title)
    if table.key in ("attendance_team", "attendance_activity", "attendance_month"):
        # 出勤率 in percent: (到岗 + 迟到早退) / 应到
        rows = [r for r in table.rows if r[1]][:12]
        return charts.hbars([r[0] for r in rows], [round((r[2] + r[3]) * 100 / r[1]) for r in rows],
                            table.title + "（出勤率%）")
    return None


@console.get("/reports")
def reports_page():
    year = _year()
    fresh = request.args.get("fresh") == "1"
    computed = [table(key, year, fresh) for key in reports.REPORTS if _allowed(key)]
    return render("reports.html", year=year, tables=[(t, chart_for(t), at) for t, at in computed],
                  this_year=local_today(g.now).year)


@console.get("/reports/<key>.<fmt>")
def report_export(key: str, fmt: str):
    if not _allowed(key):
        raise access.Forbidden(key) if key in reports.REPORTS else access.OutOfScope(key)
    if fmt not in ("csv", "xlsx"):
        abort(404)
    year = _year()
    result, _at = table(key, year)
    audit("report.export", entity="report", entity_id=f"{key}.{fmt}", after={"year": year, "rows": len(result.rows)})
    g.db.commit()
    body = exports.to_csv(result) if fmt == "csv" else exports.to_xlsx(result)
    mimetype = "text/csv; charset=utf-8" if fmt == "csv" else \
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    filename = f"{result.title}.{fmt}"
    return Response(body, mimetype=mimetype, headers={
        "Content-Disposition": f"attachment; filename=\"{key}-{year}.{fmt}\"; filename*=UTF-8''{quote(filename)}",
        "Cache-Control": "no-store"})
