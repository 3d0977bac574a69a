"""The audit log, as the coordinator's subtree wrote it: who, what, when, before and after."""

from __future__ import annotations

import json

from flask import g, request

from console.views.common import args_builder, day_bounds, page_number, paged, parse_day
from console.web import console, render
from rules import access
from store.models import AuditLog


@console.get("/audit")
def audit_log():
    stmt = access.audit_entries(g.scope)
    action = (request.args.get("action") or "").strip()[:48]
    if action:
        stmt = stmt.where(AuditLog.action.startswith(action, autoescape=True))
    entity = (request.args.get("entity") or "").strip()[:32]
    if entity:
        stmt = stmt.where(AuditLog.entity == entity)
        entity_id = (request.args.get("entity_id") or "").strip()[:64]
        if entity_id:
            stmt = stmt.where(AuditLog.entity_id == entity_id)
    day = parse_day(request.args.get("date"))
    if day:
        start, end = day_bounds(day)
        stmt = stmt.where(AuditLog.created_at >= start, AuditLog.created_at < end)
    page = page_number()
    rows, has_next = paged(g.db, stmt.order_by(AuditLog.id.desc()), page)
    return render("audit.html", rows=rows, page=page, has_next=has_next, args=args_builder(),
                  dumps=lambda v: "" if v is None else json.dumps(v, ensure_ascii=False, sort_keys=True))
