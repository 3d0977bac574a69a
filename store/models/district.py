"""The district's shape: communities and the team tree (brigade → detachments → squads)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from store.models.base import Base, utcnow

TEAM_KINDS = ("brigade", "detachment", "squad", "professional")
JOIN_POLICIES = ("auto", "approval")


class Community(Base):
    """A residential community (社区): the unit of address, bus subscriptions and squads."""

    __tablename__ = "communities"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(64), index=True)
    street: Mapped[str] = mapped_column(String(64), default="")  # 街道
    lat: Mapped[float | None]
    lng: Mapped[float | None]
    is_demo: Mapped[bool] = mapped_column(default=False)


class Team(Base):
    """A node of the team tree. `path` is the materialised path ("/1/7/42/") so a
    coordinator's subtree is one indexed prefix query."""

    __tablename__ = "teams"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(64), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # one of TEAM_KINDS
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("teams.id"))
    path: Mapped[str] = mapped_column(String(255), index=True, default="/")
    community_id: Mapped[int | None] = mapped_column(ForeignKey("communities.id"))
    street: Mapped[str] = mapped_column(String(64), default="")  # 街道, for search by street
    join_policy: Mapped[str] = mapped_column(String(16), default="auto")
    is_demo: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    parent: Mapped["Team | None"] = relationship(remote_side=[id])
    community: Mapped[Community | None] = relationship()
