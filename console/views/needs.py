"""需求库: the needs loop in the console — surveys (write, open and invite, results with
charts and a CSV export), unmet needs grouped by wording (by month and by community), the
needs menu's next version (draft, preview as the chat shows it, publish from a date; brigade
coordinators only) and the demand-and-supply report per sub-category with the projects'
links to the sub-categories they serve.

The rules are `rules.surveys`, `rules.unmet`, `rules.menu_revisions` and
`rules.needs_report`; this module scopes, audits and renders.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, time
from urllib.parse import quote

from flask import Response, g, redirect, request, url_for

from console import charts, exports
from console.views.common import CHINA, int_or_none, local_today, parse_day
from console.web import audit, console, flash, needs, render
from dialogue.flows import PAGE_SIZE, Choice, numbered
from menus.catalog import MODES
from rules import access, menu_revisions, needs_report, surveys, unmet
from rules import orders as order_rules
from rules.reports import Table, year_bounds
from store.models import Community, Survey, Team
from store.models.activities import Project

SURVEY_STATES = {"draft": "草稿", "open": "进行中", "closed": "已结束"}


def _year() -> int:
    this_year = local_today(g.now).year
    year = int_or_none(request.args.get("year")) or this_year
    return year if 2000 <= year <= this_year + 1 else this_year


def _csv(table: Table, name: str) -> Response:
    audit("report.export", entity="report", entity_id=f"{table.key}.csv", after={"rows": len(table.rows)})
    g.db.commit()
    return Response(exports.to_csv(table), mimetype="text/csv; charset=utf-8", headers={
        "Content-Disposition": f"attachment; filename=\"{table.key}.csv\"; filename*=UTF-8''{quote(name)}.csv",
        "Cache-Control": "no-store"})


# ---- the hub ---------------------------------------------------------------------------------

@console.get("/needs")
def needs_home():
    start, end = year_bounds(local_today(g.now).year)
    scoped = None if g.scope.is_district else g.scope.community_ids
    return render("needs/home.html", open_surveys=surveys.count_open(g.db),
                  unmet_count=unmet.count_between(g.db, start, end, scoped),
                  draft=menu_revisions.open_draft(g.db), can_revise=g.scope.can("menu.revise"))


# ---- surveys ---------------------------------------------------------------------------------

def _survey(survey_id: int) -> Survey:
    survey = g.db.scalar(surveys.scoped(g.scope.team_ids).where(Survey.id == survey_id))
    if survey is None:
        raise access.OutOfScope(f"survey {survey_id}")
    return survey


def _audiences():
    communities = list(g.db.scalars(access.communities(g.scope).order_by(Community.name)))
    teams = list(g.db.scalars(access.teams(g.scope).order_by(Team.path)))
    return communities, teams


@console.get("/needs/surveys")
def survey_list():
    rows = list(g.db.scalars(surveys.scoped(g.scope.team_ids).order_by(Survey.id.desc()).limit(100)))
    communities, teams = _audiences()
    return render("needs/surveys.html", rows=rows, states=SURVEY_STATES, communities=communities, teams=teams,
                  form={}, problems=[], label=lambda s: surveys.audience_label(g.db, s))


@console.post("/needs/surveys")
def survey_create():
    form = request.form
    audience = form.get("audience", "")
    community_id = int_or_none(form.get("community_id"))
    team_id = int_or_none(form.get("area_team_id"))
    problems = []
    if audience == "all" and not g.scope.is_district:
        problems.append("只有区大队可以面向全体关注者发问卷")
    if audience == "community" and community_id is not None and community_id not in g.scope.community_ids:
        problems.append("这个社区不在您管理的范围内")
    if audience == "team" and team_id is not None and team_id not in g.scope.team_ids:
        problems.append("这支队伍不在您管理的范围内")
    survey = None
    if not problems:
        try:
            survey = surveys.create(g.db, team_id=g.scope.team_id, coordinator_id=g.scope.coordinator_id,
                                    title=form.get("title", ""), intro=form.get("intro", ""),
                                    personal_reason=form.get("personal_reason", ""),
                                    questions_text=form.get("questions", ""), audience=audience,
                                    community_id=community_id, area_team_id=team_id, now=g.now)
        except surveys.SurveyError as e:
            problems = e.problems
    if problems:
        g.db.rollback()
        rows = list(g.db.scalars(surveys.scoped(g.scope.team_ids).order_by(Survey.id.desc()).limit(100)))
        communities, teams = _audiences()
        return render("needs/surveys.html", rows=rows, states=SURVEY_STATES, communities=communities, teams=teams,
                      form=form, problems=problems, label=lambda s: surveys.audience_label(g.db, s)), 400
    audit("survey.create", entity="survey", entity_id=survey.id,
          after={"title": survey.title, "audience": audience, "questions": len(survey.questions)})
    g.db.commit()
    flash("问卷草稿已保存。核对无误后点“开始并邀请”。")
    return redirect(url_for("console.survey_detail", survey_id=survey.id))


def survey_chart(result: surveys.QuestionResult):
    if result.counts:
        return charts.hbars([o for o, _ in result.counts], [n for _, n in result.counts],
                            f"第{result.number}题 {result.question['text']}")
    return None


@console.get("/needs/surveys/<int:survey_id>")
def survey_detail(survey_id: int):
    survey = _survey(survey_id)
    total, results = surveys.results(g.db, survey)
    return render("needs/survey.html", survey=survey, total=total, states=SURVEY_STATES, kinds=surveys.KINDS,
                  results=[(r, survey_chart(r)) for r in results],
                  audience=surveys.audience_label(g.db, survey))


@console.post("/needs/surveys/<int:survey_id>/open")
def survey_open(survey_id: int):
    survey = _survey(survey_id)
    try:
        count = surveys.open_and_invite(g.db, survey, g.now)
    except surveys.SurveyError as e:
        g.db.rollback()
        flash("；".join(e.problems), "error")
        return redirect(url_for("console.survey_detail", survey_id=survey_id))
    audit("survey.open", entity="survey", entity_id=survey.id, after={"invited": count})
    g.db.commit()
    flash(f"问卷已开始，已向 {count} 位关注者发送邀请（居民回复“问卷”即可参与）。")
    return redirect(url_for("console.survey_detail", survey_id=survey_id))


@console.post("/needs/surveys/<int:survey_id>/close")
def survey_close(survey_id: int):
    survey = _survey(survey_id)
    surveys.close(survey, g.now)
    audit("survey.close", entity="survey", entity_id=survey.id)
    g.db.commit()
    flash("问卷已结束，不再接受回答。")
    return redirect(url_for("console.survey_detail", survey_id=survey_id))


@console.get("/needs/surveys/<int:survey_id>.csv")
def survey_export(survey_id: int):
    survey = _survey(survey_id)
    columns, rows = surveys.export_rows(g.db, survey)
    return _csv(Table(key=f"survey-{survey.id}", title=survey.title, columns=columns, rows=rows), survey.title)


# ---- unmet needs -----------------------------------------------------------------------------

def _unmet_tables(year: int, kind: str):
    start, end = year_bounds(year)
    scoped = None if g.scope.is_district else g.scope.community_ids
    rows = unmet.rows_between(g.db, start, end, scoped, [kind] if kind in unmet.KIND_LABELS else None)
    groups = unmet.group(rows)
    months = [f"{m}月" for m in range(1, 13)]
    by_group = Table(key="unmet", title=f"{year}年 未满足的需求（相近说法归为一组）",
                     columns=["需求", "相近说法", "合计", *months], rows=unmet.by_group_and_month(groups, CHINA))
    by_place = Table(key="unmet_communities", title=f"{year}年 未满足的需求（按社区）",
                     columns=["社区", "合计", "最多的需求"], rows=unmet.by_community(g.db, groups))
    return groups, by_group, by_place


@console.get("/needs/unmet")
def unmet_report():
    year, kind = _year(), request.args.get("kind", "")
    groups, by_group, by_place = _unmet_tables(year, kind)
    top = groups[:10]
    chart = charts.hbars([g_.label for g_ in top], [g_.count for g_ in top], by_group.title)
    return render("needs/unmet.html", year=year, kind=kind, kinds=unmet.KIND_LABELS, by_group=by_group,
                  by_place=by_place, chart=chart, this_year=local_today(g.now).year)


@console.get("/needs/unmet.csv")
def unmet_export():
    _groups, by_group, _by_place = _unmet_tables(_year(), request.args.get("kind", ""))
    return _csv(by_group, by_group.title)


# ---- the needs menu's next version -------------------------------------------------------------

def _beside(limit: int = 8):
    """What the draft is written beside: the year's unmet needs and the open surveys' picks."""
    start, end = year_bounds(local_today(g.now).year)
    groups = unmet.group(unmet.rows_between(g.db, start, end))[:limit]
    picks = Counter(surveys.answer_counts_by_word(g.db, since=start)).most_common(limit)
    return groups, picks


@console.get("/needs/menu")
def menu_page():
    draft = menu_revisions.open_draft(g.db)
    groups, picks = _beside()
    pending = menu_revisions.pending_version(g.db, g.now)
    return render("needs/menu.html", draft=draft, menu=menu_revisions.catalog_of(draft) if draft else
                  order_rules.catalog_at(g.db, g.now), changes=menu_revisions.changes(g.db, draft, g.now) if draft else None,
                  versions=menu_revisions.versions(g.db)[:12], pending=pending, modes=MODES,
                  groups=groups, picks=picks, can_revise=g.scope.can("menu.revise"))


def _draft_action(action: str, apply) -> Response:
    access.require(g.scope, "menu.revise")
    draft = menu_revisions.start_draft(g.db, author_id=g.scope.coordinator_id, now=g.now)
    try:
        said = apply(draft)
    except menu_revisions.RevisionError as e:
        g.db.rollback()
        flash(e.message, "error")
        return redirect(url_for("console.menu_page"))
    audit(f"menu.{action}", entity="menu_draft", entity_id=draft.id, after=dict(request.form.items()) | {"ok": said})
    g.db.commit()
    flash(said)
    return redirect(url_for("console.menu_page") + "#draft")


@console.post("/needs/menu/draft")
@needs("menu.revise")
def menu_draft_start():
    return _draft_action("draft", lambda d: "已根据现行菜单建立草稿。")


@console.post("/needs/menu/add")
@needs("menu.revise")
def menu_add():
    f = request.form

    def apply(draft):
        minutes = int_or_none(f.get("minutes")) or 60
        code = menu_revisions.add_sub(g.db, draft, category_code=f.get("category", ""), name=f.get("name", ""),
                                      description=f.get("description", ""),
                                      keywords=[w for w in f.get("keywords", "").replace("，", ",").replace("、", ",")
                                                .split(",") if w.strip()],
                                      mode=f.get("mode", ""), minutes=minutes, now=g.now)
        return f"已新增 {code} {f.get('name', '').strip()}（草稿）。"
    return _draft_action("add", apply)


@console.post("/needs/menu/rename")
@needs("menu.revise")
def menu_rename():
    f = request.form

    def apply(draft):
        menu_revisions.rename_sub(draft, f.get("code", ""), name=f.get("name", ""),
                                  description=f.get("description") or None, now=g.now)
        return f"已改名为“{f.get('name', '').strip()}”（草稿；旧名仍可搜到）。"
    return _draft_action("rename", apply)


@console.post("/needs/menu/retire")
@needs("menu.revise")
def menu_retire():
    code = request.form.get("code", "")

    def apply(draft):
        menu_revisions.retire_sub(draft, code, g.now)
        return f"已下架 {code}（草稿；进行中的工单不受影响）。"
    return _draft_action("retire", apply)


@console.post("/needs/menu/discard")
@needs("menu.revise")
def menu_discard():
    draft = menu_revisions.open_draft(g.db)
    if draft is not None:
        audit("menu.discard", entity="menu_draft", entity_id=draft.id)
        menu_revisions.discard(g.db, draft)
        g.db.commit()
        flash("草稿已放弃。")
    return redirect(url_for("console.menu_page"))


@console.get("/needs/menu/preview")
@needs("menu.revise")
def menu_preview():
    draft = menu_revisions.open_draft(g.db)
    if draft is None:
        flash("还没有草稿。", "error")
        return redirect(url_for("console.menu_page"))
    menu = menu_revisions.catalog_of(draft)
    return render("needs/preview.html", screens=chat_screens(menu), draft=draft)


def chat_screens(menu) -> list[tuple[str, str]]:
    """The menu as the order form shows it in chat (handlers.orders: the category question,
    then each category's sub-categories), a page of 8 choices at a time."""
    screens = []
    cats = [Choice(c.code, c.name) for c in menu.categories]
    for page in range(0, len(cats), PAGE_SIZE):
        text = ["【预约志愿服务】", "请选择服务类别（回复序号），也可以直接说需要什么，例如“水管坏了”：",
                numbered(cats[page:page + PAGE_SIZE], start=page + 1)]
        if len(cats) > PAGE_SIZE:
            text.append(f"（第{page // PAGE_SIZE + 1}/{-(-len(cats) // PAGE_SIZE)}页）")
        screens.append(("服务类别", "\n".join(text)))
    for c in menu.categories:
        subs = [Choice(s.code, s.name, note=s.description) for s in c.subs]
        screens.append((c.name, "\n".join([f"【{c.name}】请选择服务项目（回复序号）：", numbered(subs)])))
    return screens


@console.post("/needs/menu/publish")
@needs("menu.revise")
def menu_publish():
    draft = menu_revisions.open_draft(g.db)
    typed = (request.form.get("effective_from") or "").strip()
    day = parse_day(typed)
    if draft is None or (typed and day is None):
        flash("还没有草稿。" if draft is None else "生效日期请写成 2026-07-01。", "error")
        return redirect(url_for("console.menu_page"))
    when = datetime.combine(day, time(0), tzinfo=CHINA) if day else None
    try:
        version = menu_revisions.publish(g.db, draft, effective_from=when, coordinator_id=g.scope.coordinator_id,
                                         now=g.now)
    except menu_revisions.RevisionError as e:
        g.db.rollback()
        flash(e.message, "error")
        return redirect(url_for("console.menu_page") + "#draft")
    audit("menu.publish", entity="catalog_version", entity_id=version.id,
          after={"draft": draft.id, "effective_from": when.isoformat() if when else None})
    g.db.commit()
    flash(f"已发布第 {version.id} 版，" + (f"{day:%Y-%m-%d} 起生效。" if version.effective_from else "立即生效。"))
    return redirect(url_for("console.menu_page"))


# ---- demand and supply; projects' links ----------------------------------------------------------

@console.get("/needs/supply")
def supply_report():
    year = _year()
    table = needs_report.report(g.db, g.scope, year)
    top = [r for r in table.rows if r[5]][:12]
    chart = charts.bars([r[0] for r in top], [("需求", [r[5] for r in top]), ("志愿者", [r[7] for r in top])],
                        table.title, stacked=False)
    return render("needs/supply.html", table=table, chart=chart, year=year, this_year=local_today(g.now).year)


@console.get("/needs/supply.csv")
def supply_export():
    table = needs_report.report(g.db, g.scope, _year())
    return _csv(table, table.title)


@console.get("/needs/projects")
def project_links():
    rows = list(g.db.scalars(access.projects(g.scope).where(Project.active.is_(True)).order_by(Project.name).limit(300)))
    names = menu_revisions.sub_names(g.db)
    return render("needs/projects.html", rows=rows, links=needs_report.links(g.db, [p.id for p in rows]), names=names)


@console.route("/needs/projects/<int:project_id>", methods=["GET", "POST"])
def project_link(project_id: int):
    project = access.get(g.db, g.scope, Project, project_id)
    if request.method == "POST":
        codes = request.form.getlist("sub")
        before = needs_report.links(g.db, [project.id]).get(project.id, [])
        needs_report.link_project(g.db, project, codes)
        after = needs_report.links(g.db, [project.id]).get(project.id, [])
        audit("project.needs", entity="project", entity_id=project.id, before={"subs": before}, after={"subs": after})
        g.db.commit()
        flash(f"已保存：{project.name} 服务 {len(after)} 个服务项目。")
        return redirect(url_for("console.project_links"))
    linked = set(needs_report.links(g.db, [project.id]).get(project.id, []))
    return render("needs/project.html", project=project, menu=order_rules.catalog_at(g.db, g.now), linked=linked)


