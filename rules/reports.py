"""Reports for coordinators, always within their subtree (`rules.access`): hours by team
and month, orders by category and state, time to accept and to complete, satisfaction, and
the annual rankings for the awards (volunteers by hours, projects by reach).

Each report returns a `Table` (title, column names, rows of plain values) so the console
shows, charts and exports (CSV, XLSX) the same figures. Months are local (Asia/Shanghai)
months; minutes are exact integers and shown as hours by the caller.

The hour reports read running totals (`store.models.rollups`) instead of the million hour
records: `count_approved` adds an approved record to them in the approving transaction,
`rebuild` recomputes them from `hour_records`, and `audit` proves they match. Volunteers do
not change teams, so a team's total is the same whether taken at approval or now; should
that ever change, `rebuild` re-attributes the totals to the current teams.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time
from statistics import median
from zoneinfo import ZoneInfo

from sqlalchemy import Float, Integer, case, cast, delete, distinct, func, insert, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from rules import access
from store.models import HourRecord, Order, OrderEvent, Team, Volunteer
from store.models.activities import Activity, Attendance, Project, Shift, SignUp
from store.models.rollups import HourMonthTotal, HourYearTotal

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


def local_part(session: Session, column, part: str):
    """The local (UTC+8) year or month number of a UTC timestamp column, on either database."""
    if session.bind.dialect.name == "sqlite":
        return cast(func.strftime("%Y" if part == "year" else "%m", column, "+8 hours"), Integer)
    # China has kept UTC+8 without daylight saving since 1991: a fixed shift, as on SQLite,
    # is cheaper per row than a time-zone lookup.
    return cast(func.extract(part, column + text("interval '8 hours'")), Integer)


# ---- running totals of approved hours ----------------------------------------------------

def count_approved(session: Session, record: HourRecord) -> None:
    """Add a just-approved record to the running totals, in the caller's transaction.
    An upsert (`minutes = minutes + …`), so two approvals of the same month both count."""
    local = record.started_at.astimezone(CHINA)
    team_id = record.volunteer.team_id
    _add(session, HourMonthTotal, {"team_id": team_id, "year": local.year, "month": local.month},
         record.minutes)
    _add(session, HourYearTotal, {"volunteer_id": record.volunteer_id, "year": local.year}, record.minutes)


def _add(session: Session, model, key: dict, minutes: int) -> None:
    dialect = postgresql if session.bind.dialect.name == "postgresql" else sqlite
    stmt = dialect.insert(model).values(**key, minutes=minutes, records=1)
    session.execute(stmt.on_conflict_do_update(
        index_elements=list(key),
        set_={"minutes": model.minutes + stmt.excluded.minutes, "records": model.records + 1}))


def _no_time_limit(session: Session) -> None:
    """A full pass over the hour records outlasts the requests' statement timeout: lift it
    for this transaction only (an operator's command, not a page)."""
    if session.bind.dialect.name == "postgresql":
        session.execute(text("SET LOCAL statement_timeout = 0"))


def _recomputed(session: Session):
    """The running totals recomputed from `hour_records`: (month rows, year rows) as selects."""
    _no_time_limit(session)
    year = local_part(session, HourRecord.started_at, "year")
    month = local_part(session, HourRecord.started_at, "month")
    approved = (select(Volunteer.team_id.label("team_id"), HourRecord.volunteer_id.label("volunteer_id"),
                       year.label("year"), month.label("month"), HourRecord.minutes.label("minutes"))
                .select_from(HourRecord).join(Volunteer, Volunteer.id == HourRecord.volunteer_id)
                .where(HourRecord.state == "approved").subquery())
    months = select(approved.c.team_id, approved.c.year, approved.c.month, func.sum(approved.c.minutes),
                    func.count()).group_by(approved.c.team_id, approved.c.year, approved.c.month)
    years = select(approved.c.volunteer_id, approved.c.year, func.sum(approved.c.minutes),
                   func.count()).group_by(approved.c.volunteer_id, approved.c.year)
    return months, years


def rebuild(session: Session) -> tuple[int, int]:
    """Recompute the running totals from `hour_records` (for data written before they
    existed, or bulk-loaded). Holds the approvals' lock, so no approval is lost meanwhile.
    Returns the number of (team, month) and (volunteer, year) rows."""
    from rules import timebank

    timebank.lock_issuing(session)
    months, years = _recomputed(session)
    session.execute(delete(HourMonthTotal))
    session.execute(delete(HourYearTotal))
    session.execute(insert(HourMonthTotal).from_select(
        ["team_id", "year", "month", "minutes", "records"], months))
    session.execute(insert(HourYearTotal).from_select(["volunteer_id", "year", "minutes", "records"], years))
    return (session.scalar(select(func.count()).select_from(HourMonthTotal)),
            session.scalar(select(func.count()).select_from(HourYearTotal)))


@dataclass
class RollupAudit:
    month_rows: int
    year_rows: int
    problems: list[str]

    @property
    def ok(self) -> bool:
        return not self.problems


def audit(session: Session, limit: int = 20) -> RollupAudit:
    """Compare the running totals with a recomputation from `hour_records`; every
    difference (at most `limit` of each kind) is a problem."""
    months, years = _recomputed(session)
    problems: list[str] = []
    for label, expected_stmt, stored_stmt in (
            ("team", months, select(HourMonthTotal.team_id, HourMonthTotal.year, HourMonthTotal.month,
                                    HourMonthTotal.minutes, HourMonthTotal.records)),
            ("volunteer", years, select(HourYearTotal.volunteer_id, HourYearTotal.year, HourYearTotal.minutes,
                                        HourYearTotal.records))):
        expected = {tuple(r[:-2]): (int(r[-2]), int(r[-1])) for r in session.execute(expected_stmt)}
        stored = {tuple(r[:-2]): (int(r[-2]), int(r[-1])) for r in session.execute(stored_stmt)
                  if r[-2] or r[-1]}
        found = 0
        for key in sorted(expected.keys() | stored.keys()):
            if expected.get(key) != stored.get(key):
                found += 1
                if found <= limit:
                    problems.append(f"{label} {'/'.join(map(str, key))}: stored (minutes, records) "
                                    f"{stored.get(key, (0, 0))}, recomputed {expected.get(key, (0, 0))}")
        if found > limit:
            problems.append(f"… and {found - limit} more {label} differences")
    return RollupAudit(
        session.scalar(select(func.count()).select_from(HourMonthTotal)),
        session.scalar(select(func.count()).select_from(HourYearTotal)), problems)


# ---- the reports -------------------------------------------------------------------------

def _groups(session: Session, scope: access.Scope) -> tuple[dict[int, str], dict[int, int]]:
    """The teams right below the coordinator's own (their own team when it is a leaf),
    and which of them each team of the subtree rolls up into."""
    teams = list(session.execute(access.teams(scope, select(Team.id, Team.name, Team.path, Team.parent_id))))
    children = [t for t in teams if t.parent_id == scope.team_id]
    heads = children or [t for t in teams if t.id == scope.team_id]
    names = {t.id: t.name for t in heads}
    owner: dict[int, int] = {}
    for t in teams:
        # The head is the ancestor (or the team itself) on the team's path "/1/7/42/".
        head = next((int(a) for a in t.path.strip("/").split("/") if a and int(a) in names), None)
        owner[t.id] = head if head is not None else scope.team_id
    names.setdefault(scope.team_id, scope.team_name)
    return names, owner


def hours_by_team_month(session: Session, scope: access.Scope, year: int) -> Table:
    stmt = access.teams(scope, select(HourMonthTotal.team_id, HourMonthTotal.month, HourMonthTotal.minutes)
                        .join(Team, Team.id == HourMonthTotal.team_id)) \
        .where(HourMonthTotal.year == year, HourMonthTotal.minutes > 0)
    names, owner = _groups(session, scope)
    grid: dict[int, list[int]] = {}
    for team_id, m, minutes in session.execute(stmt):
        row = grid.setdefault(owner.get(team_id, scope.team_id), [0] * 12)
        row[int(m) - 1] += int(minutes or 0)
    rows = [[names[tid]] + [round(x / 60, 1) for x in months] + [round(sum(months) / 60, 1)]
            for tid, months in sorted(grid.items(), key=lambda kv: (-sum(kv[1]), names[kv[0]]))]
    return Table("hours", f"{year}年各队伍认证服务时长（小时）", ["队伍"] + [f"{i}月" for i in range(1, 13)] + ["合计"], rows)


def orders_by_category_state(session: Session, scope: access.Scope, year: int) -> Table:
    from rules.orders import STATES

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


def _hours_between(session: Session, later, earlier):
    """Hours from `earlier` to `later` as a float, from the seconds to the microsecond, on
    either database (the same figure as Python's `timedelta.total_seconds() / 3600`)."""
    if session.bind.dialect.name == "sqlite":
        return func.round((func.julianday(later) - func.julianday(earlier)) * 86400.0, 6) / 3600.0
    return cast(func.extract("epoch", later - earlier), Float) / 3600.0


def response_times(session: Session, scope: access.Scope, year: int) -> Table:
    """Per local month: orders, median and mean hours from ordering to acceptance and
    from ordering to completion. One pass over the year's orders and their first
    acceptance and completion events. PostgreSQL aggregates the months itself (a median is
    `percentile_cont(0.5)`, the mean of the middle two as in `statistics.median`); SQLite,
    which has no median, hands the durations to Python as plain numbers."""
    start, end = year_bounds(year)
    firsts = access.orders(scope, select(
        Order.id.label("id"), Order.created_at.label("created_at"),
        func.min(case((OrderEvent.to_status == "accepted", OrderEvent.at))).label("accepted_at"),
        func.min(case((OrderEvent.to_status == "completed", OrderEvent.at))).label("completed_at"))) \
        .outerjoin(OrderEvent, (OrderEvent.order_id == Order.id) & OrderEvent.to_status.in_(("accepted", "completed"))) \
        .where(Order.created_at >= start, Order.created_at < end) \
        .group_by(Order.id, Order.created_at).subquery()
    durations = select(local_part(session, firsts.c.created_at, "month").label("m"),
                       _hours_between(session, firsts.c.accepted_at, firsts.c.created_at).label("acc"),
                       _hours_between(session, firsts.c.completed_at, firsts.c.created_at).label("done"),
                       firsts.c.id).subquery()

    def shown(n, mid, mean):
        return (round(float(mid), 1), round(float(mean), 1)) if n else ("", "")

    rows = []
    if session.bind.dialect.name == "postgresql":
        def mid(column):
            return func.percentile_cont(0.5).within_group(column)

        stmt = select(durations.c.m, func.count(), func.count(durations.c.acc), mid(durations.c.acc),
                      func.avg(durations.c.acc), func.count(durations.c.done), mid(durations.c.done),
                      func.avg(durations.c.done)).group_by(durations.c.m).order_by(durations.c.m)
        for m, n, n_acc, mid_acc, mean_acc, n_done, mid_done, mean_done in session.execute(stmt):
            rows.append([f"{m}月", n, n_acc, *shown(n_acc, mid_acc, mean_acc),
                         n_done, *shown(n_done, mid_done, mean_done)])
    else:
        by_month: dict[int, dict[str, list[float]]] = {}
        for m, to_accept, to_complete, _id in session.execute(select(durations).order_by(durations.c.id)):
            bucket = by_month.setdefault(int(m), {"n": [], "acc": [], "done": []})
            bucket["n"].append(1)
            for key, value in (("acc", to_accept), ("done", to_complete)):
                if value is not None:
                    bucket[key].append(float(value))
        for m in sorted(by_month):
            b = by_month[m]
            acc, done = b["acc"], b["done"]
            rows.append([f"{m}月", len(b["n"]), len(acc), *shown(acc, acc and median(acc), acc and sum(acc) / len(acc)),
                         len(done), *shown(done, done and median(done), done and sum(done) / len(done))])
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
    stmt = access.volunteers(scope, select(Volunteer.number, Volunteer.name, Volunteer.team_id,
                                           HourYearTotal.minutes)
                             .select_from(HourYearTotal).join(Volunteer, Volunteer.id == HourYearTotal.volunteer_id)) \
        .where(HourYearTotal.year == year, HourYearTotal.minutes > 0) \
        .order_by(HourYearTotal.minutes.desc(), Volunteer.number).limit(limit)
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


# ---- attendance (rules.attendance settles how each signed place ended) -----------------

ATTENDANCE_COLUMNS = ["应到", "到岗", "迟到早退", "缺席", "请假", "其中临时请假", "出勤率"]


def _tally(session: Session, scope: access.Scope, year: int, *keys):
    """Counts of settled places on shifts of the subtree's projects that began in `year`,
    grouped by `keys` and the outcome."""
    start, end = year_bounds(year)
    stmt = (select(*keys, SignUp.attendance, SignUp.late_notice, func.count())
            .select_from(SignUp).join(Shift, Shift.id == SignUp.shift_id)
            .join(Activity, Activity.id == Shift.activity_id).join(Project, Project.id == Activity.project_id)
            .join(Volunteer, Volunteer.id == SignUp.volunteer_id)
            .where(Project.team_id.in_(scope.team_ids), Shift.starts_at >= start, Shift.starts_at < end,
                   SignUp.attendance.is_not(None))
            .group_by(*keys, SignUp.attendance, SignUp.late_notice))
    grid: dict[tuple, dict[str, int]] = {}
    for *key, outcome, late, n in session.execute(stmt):
        cell = grid.setdefault(tuple(key), {})
        cell[outcome] = cell.get(outcome, 0) + n
        if late:
            cell["late"] = cell.get("late", 0) + n
    return grid


def _attendance_row(c: dict[str, int]) -> list:
    """应到 (present + partial + absent: leave is not expected), the outcomes, the rate."""
    expected = c.get("present", 0) + c.get("partial", 0) + c.get("absent", 0)
    came = c.get("present", 0) + c.get("partial", 0)
    rate = f"{came / expected:.0%}" if expected else ""
    return [expected, c.get("present", 0), c.get("partial", 0), c.get("absent", 0), c.get("excused", 0),
            c.get("late", 0), rate]


def attendance_by_team(session: Session, scope: access.Scope, year: int) -> Table:
    names, owner = _groups(session, scope)
    merged: dict[int, dict[str, int]] = {}
    for (team_id,), c in _tally(session, scope, year, Volunteer.team_id).items():
        row = merged.setdefault(owner.get(team_id, scope.team_id), {})
        for k, n in c.items():
            row[k] = row.get(k, 0) + n
    rows = [[names.get(tid, "")] + _attendance_row(c)
            for tid, c in sorted(merged.items(), key=lambda kv: names.get(kv[0], ""))]
    return Table("attendance_team", f"{year}年各队伍志愿者出勤", ["队伍"] + ATTENDANCE_COLUMNS, rows,
                 note="出勤率 =（到岗 + 迟到早退）÷ 应到；请假不计入应到。")


def attendance_by_activity(session: Session, scope: access.Scope, year: int) -> Table:
    grid = _tally(session, scope, year, Project.name, Activity.title)
    rows = [[f"{project}·{title}"] + _attendance_row(c) for (project, title), c in sorted(grid.items())]
    return Table("attendance_activity", f"{year}年各活动出勤", ["项目·活动"] + ATTENDANCE_COLUMNS, rows)


def attendance_by_month(session: Session, scope: access.Scope, year: int) -> Table:
    month = local_part(session, Shift.starts_at, "month")
    grid = {int(m): c for (m,), c in _tally(session, scope, year, month).items()}
    rows = [[f"{m}月"] + _attendance_row(grid[m]) for m in sorted(grid)]
    return Table("attendance_month", f"{year}年每月出勤", ["月份"] + ATTENDANCE_COLUMNS, rows)


def no_shows(session: Session, scope: access.Scope, year: int, limit: int = 200) -> Table:
    """Volunteers who missed shifts (or cancelled late) in `year`, most first."""
    grid = _tally(session, scope, year, Volunteer.id, Volunteer.number, Volunteer.name, Volunteer.team_id)
    team_names = dict(session.execute(access.teams(scope, select(Team.id, Team.name))).all())
    rows = sorted(([number, name, team_names.get(team_id, ""), c.get("absent", 0), c.get("late", 0)]
                   for (_, number, name, team_id), c in grid.items() if c.get("absent") or c.get("late")),
                  key=lambda r: (-r[3], -r[4], r[0]))[:limit]
    return Table("no_shows", f"{year}年缺席名单", ["编号", "姓名", "队伍", "缺席次数", "临时请假次数"], rows)


REPORTS = {
    "hours": hours_by_team_month,
    "orders": orders_by_category_state,
    "response": response_times,
    "satisfaction": satisfaction,
    "volunteer_ranking": volunteer_ranking,
    "project_ranking": project_ranking,
    "attendance_team": attendance_by_team,
    "attendance_activity": attendance_by_activity,
    "attendance_month": attendance_by_month,
    "no_shows": no_shows,
}
RANKINGS = ("volunteer_ranking", "project_ranking")
