"""Writing the audit log: one call per coordinator action, inside the action's transaction;
failed logins (`record_login_failure`); and the retention policy (`prune`, `prune_due`).

`snapshot(row, fields)` takes the before/after pictures as plain JSON; personal data is
never put in the log (callers list the fields they snapshot, and phones or ID numbers are
not among them).
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from rules.access import Scope
from store.models import AuditLog, Coordinator, Team

# The path of failed logins for usernames that name no account: only the district's
# brigade reads them (rules.access.audit_entries lets the district root read every entry).
UNKNOWN_ACCOUNT_PATH = "/"
PRUNE_BATCH = 5000
PRUNE_EVERY = 3600  # seconds between the scheduler's prunes (a Redis key, may be lost)


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


def record_login_failure(session: Session, *, username: str, coordinator: Coordinator | None, reason: str,
                         action: str = "login.failed", ip: str | None, now: datetime) -> AuditLog:
    """A refused login: who was tried (as typed), from where, when, why. Nobody signed in,
    so there is no acting coordinator; the entry is filed under the tried account's team
    (its coordinators and those above see attempts on it) or, for a username that names
    no account, under the district."""
    path = UNKNOWN_ACCOUNT_PATH
    if coordinator is not None:
        path = session.scalar(select(Team.path).where(Team.id == coordinator.team_id)) or UNKNOWN_ACCOUNT_PATH
    entry = AuditLog(coordinator_id=None, actor=username.strip()[:64] or "（空）", team_path=path, action=action,
                     entity="coordinator", entity_id="" if coordinator is None else str(coordinator.id),
                     reason=reason[:255], ip=ip, created_at=now)
    session.add(entry)
    return entry


def prune(session: Session, now: datetime, days: int) -> int:
    """Delete entries older than `days` (0: keep every entry), in batches; how many went."""
    if days <= 0:
        return 0
    cutoff = now - timedelta(days=days)
    removed = 0
    while True:
        ids = list(session.scalars(select(AuditLog.id).where(AuditLog.created_at < cutoff)
                                   .order_by(AuditLog.id).limit(PRUNE_BATCH)))
        if not ids:
            return removed
        session.execute(delete(AuditLog).where(AuditLog.id.in_(ids)))
        session.commit()
        removed += len(ids)


def prune_due(services) -> int:
    """Due work for the scheduler (pushes.scheduler.DUE_WORK): apply the retention policy
    (VOLBOT_AUDIT_RETENTION_DAYS) at most once an hour across every scheduler."""
    days = services.config.audit_retention_days
    if days <= 0 or not services.redis.set("volbot:audit:pruned", "1", nx=True, ex=PRUNE_EVERY):
        return 0
    with services.db.session() as session:
        return prune(session, services.clock.now(), days)


PHONE_REVEAL = "phone.reveal"  # a coordinator had a full phone number shown, with a reason (rules.audit_actions names it)
