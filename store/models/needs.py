"""The needs loop (需求库): surveys and their answers, what residents asked for that the menu
did not offer, drafts of the next needs menu, and which sub-categories a project serves.

A survey's questions are data (`questions`, checked by `rules.surveys`); a follower answers a
survey once (`survey_responses` is unique on survey and follower). An unmet need keeps what
was asked, where and when — never who: it has no follower column at all. A menu draft is
edited in the console and, once published, becomes a `CatalogVersion` with its
`effective_from`.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from store.models.base import Base, utcnow
from store.models.district import Community, Team
from store.models.followers import Follower

SURVEY_STATES = ("draft", "open", "closed")
AUDIENCES = ("all", "community", "team")
UNMET_KINDS = ("search", "other", "retired", "no_volunteer")


class Survey(Base):
    """A short survey (摸底调查) a coordinator wrote for a community, a team's area or all."""

    __tablename__ = "surveys"

    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(40))
    intro: Mapped[str] = mapped_column(String(200), default="")
    # Why personal data is asked; empty means no question may ask for it (rules.surveys).
    personal_reason: Mapped[str] = mapped_column(String(200), default="")
    questions: Mapped[list] = mapped_column(JSON, default=list)
    audience: Mapped[str] = mapped_column(String(16), default="all")  # one of AUDIENCES
    community_id: Mapped[int | None] = mapped_column(ForeignKey("communities.id"))
    area_team_id: Mapped[int | None] = mapped_column(ForeignKey("teams.id"))  # audience "team"
    team_id: Mapped[int] = mapped_column(ForeignKey("teams.id"), index=True)  # the owner team (scope)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("coordinators.id", ondelete="SET NULL"))
    state: Mapped[str] = mapped_column(String(16), default="draft")
    opened_at: Mapped[datetime | None]
    closed_at: Mapped[datetime | None]
    invited: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    community: Mapped[Community | None] = relationship(foreign_keys=[community_id])
    area_team: Mapped[Team | None] = relationship(foreign_keys=[area_team_id])


class SurveyResponse(Base):
    """One follower's answers to one survey. `follower_id` only keeps the answer set single
    (it is never shown); it goes to NULL when the follower's data is erased."""

    __tablename__ = "survey_responses"
    __table_args__ = (UniqueConstraint("survey_id", "follower_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    survey_id: Mapped[int] = mapped_column(ForeignKey("surveys.id", ondelete="CASCADE"), index=True)
    follower_id: Mapped[int | None] = mapped_column(ForeignKey("followers.id", ondelete="SET NULL"))
    community_id: Mapped[int | None] = mapped_column(ForeignKey("communities.id"))
    answers: Mapped[list] = mapped_column(JSON, default=list)  # one entry per question, in order
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    follower: Mapped[Follower | None] = relationship()


class UnmetNeed(Base):
    """Something a resident asked for that the account could not serve: a search that matched
    nothing, a need typed as 其他, an order refused because its service was retired, an order
    nobody could take. Text, community and time only."""

    __tablename__ = "unmet_needs"
    __table_args__ = (Index("ix_unmet_needs_created", "created_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # one of UNMET_KINDS
    text: Mapped[str] = mapped_column(String(100))
    sub_code: Mapped[str | None] = mapped_column(String(8), index=True)  # no_volunteer / retired
    community_id: Mapped[int | None] = mapped_column(ForeignKey("communities.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    community: Mapped[Community | None] = relationship()


class MenuDraft(Base):
    """The next needs menu as a brigade coordinator edits it, based on a published version;
    publishing it records a `CatalogVersion` (`published_version_id`)."""

    __tablename__ = "menu_drafts"

    id: Mapped[int] = mapped_column(primary_key=True)
    data: Mapped[dict] = mapped_column(JSON)  # the catalog document (menus.catalog format)
    retired: Mapped[list] = mapped_column(JSON, default=list)  # sub-category codes taken out
    base_version_id: Mapped[int | None] = mapped_column(ForeignKey("catalog_versions.id"))
    author_id: Mapped[int | None] = mapped_column(ForeignKey("coordinators.id", ondelete="SET NULL"))
    note: Mapped[str] = mapped_column(String(200), default="")
    published_version_id: Mapped[int | None] = mapped_column(ForeignKey("catalog_versions.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class ProjectNeed(Base):
    """A project serves a sub-category of the needs menu (项目化管理: projects follow needs)."""

    __tablename__ = "project_needs"

    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True)
    sub_code: Mapped[str] = mapped_column(String(8), primary_key=True, index=True)
    note: Mapped[str] = mapped_column(Text, default="")
