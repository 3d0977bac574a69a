"""The audit log: every action a coordinator takes in the console, with before and after.

Rows are only ever added. `team_path` is the acting coordinator's team path at the time,
so the log itself is scoped like everything else: a coordinator reads the entries written
by coordinators of their own subtree.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from store.models.base import Base, utcnow


class AuditLog(Base):
    __tablename__ = "audit_log"
    __table_args__ = (
        Index("ix_audit_log_entity", "entity", "entity_id"),
        Index("ix_audit_log_team_path_created", "team_path", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    coordinator_id: Mapped[int | None] = mapped_column(
        ForeignKey("coordinators.id", ondelete="SET NULL"), index=True
    )
    # Copied, so the entry still says who it was if the account is renamed or removed.
    actor: Mapped[str] = mapped_column(String(64))
    team_path: Mapped[str] = mapped_column(String(255))
    action: Mapped[str] = mapped_column(String(48))  # e.g. "hours.approve", "login"
    entity: Mapped[str] = mapped_column(String(32), default="")  # e.g. "hour_record"
    entity_id: Mapped[str] = mapped_column(String(64), default="")
    before: Mapped[dict | None] = mapped_column(JSON)
    after: Mapped[dict | None] = mapped_column(JSON)
    reason: Mapped[str | None] = mapped_column(String(255))
    ip: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
