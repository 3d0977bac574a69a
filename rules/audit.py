"""Writing the audit log: one call per coordinator action, inside the action's transaction.

`snapshot(row, fields)` takes the before/after pictures as plain JSON; personal data is
never put in the log (callers list the fields they snapshot, and phones or ID numbers are
not among them).
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from sqlalchemy.orm import Session

from rules.access import Scope
from store.models import AuditLog


def snapshot(row, fields) -> dict:
    return {name: _plain(getattr(row, name, None)) for name in fields}


def _plain(value):
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def record(session: Session, scope: Scope, action: str, *, entity: str = "", entity_id=None,
           before: dict | None = None, after: dict | None = None, reason: str | None = None,
           ip: str | None = None, now: datetime | None = None) -> AuditLog:
    entry = AuditLog(
        coordinator_id=scope.coordinator_id,
        actor=scope.coordinator_name[:64],
        team_path=scope.path,
        action=action,
        entity=entity,
        entity_id="" if entity_id is None else str(entity_id),
        before=_plain(before) if before is not None else None,
        after=_plain(after) if after is not None else None,
        reason=(reason or None) and reason[:255],
        ip=ip,
    )
    if now is not None:
        entry.created_at = now
    session.add(entry)
    return entry


# ---- actions on personal data (their Chinese names beside them, for the audit page) --------

PHONE_REVEAL = "phone.reveal"  # a coordinator had a full phone number shown, with a reason
PII_ACTION_LABELS = {PHONE_REVEAL: "查看完整电话"}
