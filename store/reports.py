"""Reports for coordinators, always within their subtree (`store.access`): hours by team
and month, orders by category and state, time to accept and to complete, satisfaction, and
the annual rankings for the awards (volunteers by hours, projects by reach).

Each report returns a `Table` (title, column names, rows of plain values) so the console
shows, charts and exports (CSV, XLSX) the same figures. Months are local (Asia/Shanghai)
months; minutes are exact integers and shown as hours by the caller.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time
from statistics import median
from zoneinfo import ZoneInfo

from sqlalchemy import distinct, func, select
from sqlalchemy.orm import Session

from store import access
from store.models import HourRecord, Order, OrderEvent, Team, Volunteer
from store.models.activities import Activity, Attendance, Project, Shift

CHINA = ZoneInfo("Asia/Shanghai")


@dataclass
class Table:
    key: str
    title: str
    columns: list[str]
    rows: list[list] = field(default_factory=list)
    note: str = ""


def year_bounds(year: int) -> tuple[datetime, datetime]:
    return (datetime.combine(date(year, 1, 1), time(0), tzinfo=CHINA),
            datetime.combine(date(year + 1, 1, 1), time(0), tzinfo=CHINA))


def local_month(session: Session, column):
    """The local (UTC+8) month number of a UTC timestamp column, on either database."""
    if session.bind.dialect.name == "sqlite":
        return func.strftime("%m", column, "+8 hours")  # "01".."12"
    return func.extract("month", func.timezone("Asia/Shanghai", func.timezone("UTC", column)))


def _groups(session: Session, scope: access.Scope) -> tuple[dict[int, str], dict[int, int]]:
    """The teams right below the coordinator's own (their own team when it is a leaf),
    and which of them each team of the subtree rolls up into."""
    teams = list(session.execute(access.teams(scope, select(Team.id, Team.name, Team.path, Team.parent_id))))
    children = [t for t in teams if t.parent_id == scope.team_id]
    heads = children or [t for t in teams if t.id == scope.team_id]
    names = {t.id: t.name for t in heads}
    owner: dict[int, int] = {}
    for t in teams:
        head = next((h for h in heads if t.path.startswith(h.path)), None)
        owner[t.id] = head.id if head else scope.team_id
    names.setdefault(scope.team_id, scope.team_name)
    return names, owner


def hours_by_team_month(session: Session, scope: access.Scope, year: int) -> Table:
    start, end = year_bounds(year)
    month = local_month(session, HourRecord.started_at)
    stmt = access.hour_records(scope, select(Volunteer.team_id, month.label("m"), func.sum(HourRecord.minutes))) \
        .where(HourRecord.state == "approved", HourRecord.started_at >= start, HourRecord.started_at < end) \
        .group_by(Volunteer.team_id, month)
    names, owner = _groups(session, scope)
    grid: dict[int, list[int]] = {}
    for team_id, m, minutes in session.execute(stmt):
        row = grid.setdefault(owner.get(team_id, scope.team_id), [0] * 12)
        row[int(m) - 1] += int(minutes or 0)
    rows = [[names[tid]] + [round(x / 60, 1) for x in months] + [round(sum(months) / 60, 1)]
            for tid, months in sorted(grid.items(), key=lambda kv: -sum(kv[1]))]
    return Table("hours", f"{year}年各队伍认证服务时长（小时）", ["队伍"] + [f"{i}月" for i in range(1, 13)] + ["合计"], rows)


def orders_by_category_state(session: Session, scope: access.Scope, year: int) -> Table:
    from store.orders import STATES

    start, end = year_bounds(year)
    stmt = access.orders(scope, select(Order.category_name, Order.status, func.count())) \
        .where(Order.created_at >= start, Order.created_at < end) \
        .group_by(Order.category_name, Order.status)
    states = list(STATES)
    grid: dict[str, list[int]] = {}
    for category, status, n in session.execute(stmt):
        grid.setdefault(category, [0] * len(states))[states.index(status)] += n
    rows = [[c] + counts + [sum(counts)] for c, counts in sorted(grid.items(), key=lambda kv: -sum(kv[1]))]
    return Table("orders", f"{year}年工单：类别 × 状态", ["类别"] + [STATES[s] for s in states] + ["合计"], rows)


def _first_event(session: Session, scope: access.Scope, to_status: str, start, end):
    return dict(session.execute(
        access.orders(scope, select(Order.id, func.min(OrderEvent.at)))
        .join(OrderEvent, OrderEvent.order_id == Order.id)
        .where(Order.created_at >= start, Order.created_at < end, OrderEvent.to_status == to_status)
        .group_by(Order.id)).all())


def response_times(session: Session, scope: access.Scope, year: int) -> Table:
    """Per local month: orders, median and mean hours from ordering to acceptance and
    from ordering to completion."""
    start, end = year_bounds(year)
    created = dict(session.execute(access.orders(scope, select(Order.id, Order.created_at))
                                   .where(Order.created_at >= start, Order.created_at < end)).all())
    accepted = _first_event(session, scope, "accepted", start, end)
    completed = _first_event(session, scope, "completed", start, end)
    by_month: dict[int, dict[str, list[float]]] = {}
    for oid, at in created.items():
        m = at.astimezone(CHINA).month
        bucket = by_month.setdefault(m, {"n": [], "acc": [], "done": []})
        bucket["n"].append(1)
        if oid in accepted:
            bucket["acc"].append((accepted[oid] - at).total_seconds() / 3600)
        if oid in completed:
            bucket["done"].append((completed[oid] - at).total_seconds() / 3600)

    def stats(values):
        return (round(median(values), 1), round(sum(values) / len(values), 1)) if values else ("", "")

    rows = []
    for m in sorted(by_month):
        b = by_month[m]
        rows.append([f"{m}月", len(b["n"]), len(b["acc"]), *stats(b["acc"]), len(b["done"]), *stats(b["done"])])
    return Table("response", f"{year}年响应时间（小时）",
                 ["月份", "工单数", "已接单", "接单中位数", "接单平均", "已完成", "完成中位数", "完成平均"], rows)


def satisfaction(session: Session, scope: access.Scope, year: int) -> Table:
    start, end = year_bounds(year)
    stmt = access.orders(scope, select(Order.category_name, Order.rating, func.count())) \
        .where(Order.created_at >= start, Order.created_at < end, Order.rating.is_not(None)) \
        .group_by(Order.category_name, Order.rating)
    grid: dict[str, list[int]] = {}
    for category, rating, n in session.execute(stmt):
        grid.setdefault(category, [0] * 5)[int(rating) - 1] += n
    rows = []
    for category, counts in grid.items():
        total = sum(counts)
        mean = sum((i + 1) * c for i, c in enumerate(counts)) / total
        rows.append([category, *counts, total, round(mean, 2)])
    rows.sort(key=lambda r: (-r[-1], -r[-2]))
    return Table("satisfaction", f"{year}年满意度（按类别）", ["类别", "1星", "2星", "3星", "4星", "5星", "评价数", "平均分"], rows)


def volunteer_ranking(session: Session, scope: access.Scope, year: int, limit: int = 100) -> Table:
    start, end = year_bounds(year)
    total = func.sum(HourRecord.minutes)
    stmt = access.hour_records(scope, select(Volunteer.number, Volunteer.name, Volunteer.team_id, total.label("t"))) \
        .where(HourRecord.state == "approved", HourRecord.started_at >= start, HourRecord.started_at < end) \
        .group_by(Volunteer.id, Volunteer.number, Volunteer.name, Volunteer.team_id) \
        .order_by(total.desc(), Volunteer.number).limit(limit)
    team_names = dict(session.execute(access.teams(scope, select(Team.id, Team.name))).all())
    rows = [[i, number, name, team_names.get(team_id, ""), round(int(t) / 60, 1)]
            for i, (number, name, team_id, t) in enumerate(session.execute(stmt), 1)]
    return Table("volunteer_ranking", f"{year}年志愿者服务时长排行", ["名次", "编号", "姓名", "队伍", "时长(小时)"], rows)


def project_ranking(session: Session, scope: access.Scope, year: int, limit: int = 50) -> Table:
    """Projects by reach: distinct volunteers who served, activities held, and hours
    served (attendance). Activities carry no resident rating; order satisfaction is the
    separate `satisfaction` table."""
    start, end = year_bounds(year)
    stmt = access.projects(scope, select(
        Project.name, Project.team_id,
        func.count(distinct(Activity.id)), func.count(distinct(Attendance.volunteer_id)),
        func.coalesce(func.sum(Attendance.minutes), 0))) \
        .join(Activity, Activity.project_id == Project.id) \
        .outerjoin(Shift, Shift.activity_id == Activity.id) \
        .outerjoin(Attendance, Attendance.shift_id == Shift.id) \
        .where(Activity.starts_at >= start, Activity.starts_at < end, Activity.state != "cancelled") \
        .group_by(Project.id, Project.name, Project.team_id)
    team_names = dict(session.execute(access.teams(scope, select(Team.id, Team.name))).all())
    rows = sorted(([name, team_names.get(tid, ""), acts, people, round(int(minutes) / 60, 1)]
                   for name, tid, acts, people, minutes in session.execute(stmt)),
                  key=lambda r: (-r[3], -r[4], -r[2], r[0]))[:limit]
    return Table("project_ranking", f"{year}年项目影响力排行",
                 ["名次", "项目", "队伍", "活动场次", "参与志愿者", "服务时长(小时)"],
                 [[i, *r] for i, r in enumerate(rows, 1)])


REPORTS = {
    "hours": hours_by_team_month,
    "orders": orders_by_category_state,
    "response": response_times,
    "satisfaction": satisfaction,
    "volunteer_ranking": volunteer_ranking,
    "project_ranking": project_ranking,
}
RANKINGS = ("volunteer_ranking", "project_ranking")
