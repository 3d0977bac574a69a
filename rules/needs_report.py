"""Projects follow the needs (项目化管理): per sub-category of the needs menu, the demand
beside the supply, within a coordinator's subtree, for one year.

Demand: orders made for it; unmet requests tied to it (no volunteer took the order, or it
was refused because the item had left the menu); survey answers that point to it (a chosen
option whose best match in the menu is this sub-category, read by the menu's own search).
Supply: active projects linked to it (`ProjectNeed`), active volunteers with its skill
(skills are categories), and approved hours served for it — order hours of its orders plus
shift hours of its linked projects' activities (a project linked to two sub-categories
counts for both).

Codes, not names, are counted, so the report spans menu versions; a code is named as its
newest version names it (`rules.menu_revisions.sub_names`), and a retired one is marked.
Linking a project is `link_project`.
"""

from __future__ import annotations

from collections import Counter

from sqlalchemy import String, cast, delete, func, literal, select
from sqlalchemy.orm import Session

from rules import access, needs, surveys
from rules import orders as order_rules
from rules.menu_revisions import sub_names
from rules.reports import Table, year_bounds
from store.models import HourRecord, Order, ProjectNeed, UnmetNeed, Volunteer
from store.models.activities import Activity, Project, Shift

ORDER_NUMBER_WIDTH = len("D20261128-0042")
COLUMNS = ["服务项目", "类别", "工单", "未满足", "问卷选择", "需求合计", "关联项目", "有此专长的志愿者",
           "服务时长（小时）", "供需提示"]


def link_project(session: Session, project: Project, codes: list[str]) -> None:
    """Set the sub-categories `project` serves (replacing the previous links)."""
    known = set(sub_names(session))
    wanted = sorted({c for c in codes if c in known})
    session.execute(delete(ProjectNeed).where(ProjectNeed.project_id == project.id))
    session.add_all([ProjectNeed(project_id=project.id, sub_code=c) for c in wanted])
    session.flush()


def links(session: Session, project_ids: list[int]) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    if project_ids:
        for pid, code in session.execute(select(ProjectNeed.project_id, ProjectNeed.sub_code)
                                         .where(ProjectNeed.project_id.in_(project_ids))
                                         .order_by(ProjectNeed.sub_code)):
            out.setdefault(pid, []).append(code)
    return out


def survey_demand(session: Session, start, end) -> Counter:
    """Survey picks per sub-category code: each chosen option goes to its best menu match."""
    menu = order_rules.current_catalog(session)
    out: Counter = Counter()
    for option, n in surveys.answer_counts_by_word(session, since=start, until=end).items():
        hits = needs.search(menu, option, limit=1)
        if hits:
            out[hits[0].sub.code] += n
    return out


def _hint(demand: int, projects: int, volunteers: int) -> str:
    if demand and not volunteers:
        return "有需求无志愿者：招募"
    if demand >= 10 and not projects:
        return "需求多无项目：可立项"
    if not demand and projects:
        return "有项目少需求：可调整"
    return ""


def report(session: Session, scope: access.Scope, year: int) -> Table:
    start, end = year_bounds(year)
    names = sub_names(session)
    in_use = {s.code for s in order_rules.current_catalog(session).subs}

    orders = dict(session.execute(access.orders(scope, select(Order.sub_code, func.count()))
                                  .where(Order.created_at >= start, Order.created_at < end)
                                  .group_by(Order.sub_code)).all())
    unmet_stmt = (select(UnmetNeed.sub_code, func.count()).where(
        UnmetNeed.sub_code.is_not(None), UnmetNeed.created_at >= start, UnmetNeed.created_at < end)
        .group_by(UnmetNeed.sub_code))
    if not scope.is_district:
        unmet_stmt = unmet_stmt.where(UnmetNeed.community_id.in_(scope.community_ids))
    unmet = dict(session.execute(unmet_stmt).all())
    picks = survey_demand(session, start, end)

    linked = (select(ProjectNeed.sub_code, func.count()).select_from(Project)
              .join(ProjectNeed, ProjectNeed.project_id == Project.id))
    projects = dict(session.execute(access.projects(scope, linked).where(Project.active.is_(True))
                                    .group_by(ProjectNeed.sub_code)).all())
    skilled: Counter = Counter()
    for (skills,) in session.execute(access.volunteers(scope, select(Volunteer.skills))
                                     .where(Volunteer.state == "active")):
        skilled.update(set(skills or []))

    approved = (HourRecord.state == "approved", HourRecord.started_at >= start, HourRecord.started_at < end)
    order_minutes = dict(session.execute(
        access.hour_records(scope, select(Order.sub_code, func.sum(HourRecord.minutes)))
        # source_ref is "order:<number>" (+ ":approved" for approved extra minutes); order numbers
        # have a fixed width, so this is an equality join the database can hash.
        .join(Order, func.substr(HourRecord.source_ref, 7, ORDER_NUMBER_WIDTH) == Order.number)
        .where(HourRecord.source == "order", *approved).group_by(Order.sub_code)).all())
    shift_minutes = dict(session.execute(
        access.hour_records(scope, select(ProjectNeed.sub_code, func.sum(HourRecord.minutes)))
        .join(Shift, HourRecord.source_ref == literal("shift:") + cast(Shift.id, String))
        .join(Activity, Activity.id == Shift.activity_id)
        .join(ProjectNeed, ProjectNeed.project_id == Activity.project_id)
        .where(HourRecord.source == "activity", *approved).group_by(ProjectNeed.sub_code)).all())

    codes = sorted(in_use | set(orders) | set(unmet) | set(picks) | set(projects))
    rows = []
    for code in codes:
        sub, cat = names.get(code, (code, ""))
        if code not in in_use:
            sub += "（已下架）"
        demand = (orders.get(code, 0), unmet.get(code, 0), picks.get(code, 0))
        minutes = int(order_minutes.get(code) or 0) + int(shift_minutes.get(code) or 0)
        supply = (projects.get(code, 0), skilled.get(code.split("-")[0], 0))
        rows.append([sub, cat, *demand, sum(demand), *supply, round(minutes / 60, 1),
                     _hint(sum(demand), supply[0], supply[1])])
    rows.sort(key=lambda r: (-r[5], r[1], r[0]))
    return Table(key="needs_supply", title=f"{year}年 需求与供给（按服务项目）", columns=list(COLUMNS), rows=rows,
                 note="需求：工单、未满足请求（无人接单、服务下架）、问卷中选到该项目的次数；"
                      "供给：关联的项目、有该类别专长的在册志愿者、已审核的服务时长。")

