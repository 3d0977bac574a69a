"""The audit log, as the coordinator's subtree wrote it (the district reads all of it, with
the failed logins for usernames that name no account): who, from which address, what (in
Chinese, `rules.audit_actions`), when (China time), before and after, reason. Filters by
actor, action and dates live in the URL; the CSV export takes the same filters, masks any
phone or ID number in free text, and is itself audited."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import datetime

from flask import Response, g, request

from console.exports import safe_cell
from console.views.common import CHINA, args_builder, day_bounds, page_number, paged, parse_day
from console.web import audit, console, render
from rules import access, masks
from rules.audit_actions import ACTION_NAMES, action_name
from store.models import AuditLog

EXPORT_LIMIT = 100_000  # rows in one CSV; narrow the dates for more


_INSTANT = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}")


def _china(value):
    """The before/after pictures keep instants as UTC ISO text; shown in China time."""
    if isinstance(value, dict):
        return {k: _china(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_china(v) for v in value]
    if isinstance(value, str) and _INSTANT.match(value):
        try:
            instant = datetime.fromisoformat(value)
        except ValueError:
            return value
        if instant.tzinfo is not None:
            return instant.astimezone(CHINA).strftime("%Y-%m-%d %H:%M")
    return value


def _dumps(value) -> str:
    return "" if value is None else json.dumps(_china(value), ensure_ascii=False, sort_keys=True)


def _filters():
    """The entries the query string asks for, and the filters as given."""
    stmt = access.audit_entries(g.scope)
    given = {}
    actor = (request.args.get("actor") or "").strip()[:64]
    if actor:
        stmt = stmt.where(AuditLog.actor.contains(actor, autoescape=True))
        given["actor"] = actor
    action = (request.args.get("action") or "").strip()[:48]
    if action:  # an exact action, or a family ("hours." is every hours.* action)
        stmt = stmt.where(AuditLog.action.startswith(action, autoescape=True) if action.endswith(".")
                          else AuditLog.action == action)
        given["action"] = action
    entity = (request.args.get("entity") or "").strip()[:32]
    if entity:
        stmt = stmt.where(AuditLog.entity == entity)
        given["entity"] = entity
        entity_id = (request.args.get("entity_id") or "").strip()[:64]
        if entity_id:
            stmt = stmt.where(AuditLog.entity_id == entity_id)
            given["entity_id"] = entity_id
    single = parse_day(request.args.get("date"))
    start = parse_day(request.args.get("from")) or single
    end = parse_day(request.args.get("to")) or single
    if start:
        stmt = stmt.where(AuditLog.created_at >= day_bounds(start)[0])
        given["from"] = start.isoformat()
    if end:
        stmt = stmt.where(AuditLog.created_at < day_bounds(end)[1])
        given["to"] = end.isoformat()
    return stmt.order_by(AuditLog.id.desc()), given


@console.get("/audit")
def audit_log():
    stmt, _given = _filters()
    page = page_number()
    rows, has_next = paged(g.db, stmt, page)
    return render("audit.html", rows=rows, page=page, has_next=has_next, args=args_builder(),
                  actions=sorted(ACTION_NAMES.items(), key=lambda kv: kv[0]), action_name=action_name,
                  dumps=lambda v: masks.in_text(_dumps(v)), mask=masks.in_text)


@console.get("/audit.csv")
def audit_export():
    stmt, given = _filters()
    rows = list(g.db.scalars(stmt.limit(EXPORT_LIMIT)))
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["时间（北京时间）", "操作人", "地址", "操作", "操作代码", "对象", "对象编号", "之前", "之后", "原因"])
    for e in rows:
        writer.writerow([safe_cell(v) for v in (
            e.created_at.astimezone(CHINA).strftime("%Y-%m-%d %H:%M:%S"), masks.in_text(e.actor), e.ip or "",
            action_name(e.action), e.action, e.entity, e.entity_id, masks.in_text(_dumps(e.before)),
            masks.in_text(_dumps(e.after)), masks.in_text(e.reason or ""))])
    audit("audit.export", entity="audit_log", after={"filters": given, "rows": len(rows)})
    g.db.commit()
    body = ("\ufeff" + out.getvalue()).encode("utf-8")  # a BOM: Excel then reads the Chinese right
    return Response(body, mimetype="text/csv; charset=utf-8",
                    headers={"Content-Disposition": "attachment; filename=audit-log.csv"})

