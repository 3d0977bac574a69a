"""Subscribe-notice consent, paused push kinds and the district's announcements.

`NoticeConsent`: one row per user and notice template, as WeChat reports it — accepted
(each acceptance counted in `grants`) or rejected (refused in the popup, in the notice
settings, or a 43101 answer). Whether the template is one-time or long-term is the kind's
(menus/templates.yaml): a one-time notice may go while `sent < grants`, a long-term one
while accepted. The worker spends consent with the send's recorded outcome.

`PausedKind`: a kind whose template WeChat banned (43116): nothing of it is sent until a
coordinator fixes the template and resumes it.

`Announcement`: a coordinator's 政府信息推送, from draft through approval to its sends.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from store.models.base import Base, utcnow

CONSENT_STATES = ("accepted", "rejected")
ANNOUNCEMENT_STATES = ("draft", "submitted", "approved", "rejected", "sent")
AUDIENCES = ("subtree", "community", "team", "skill")


class NoticeConsent(Base):
    __tablename__ = "notice_consents"
    __table_args__ = (UniqueConstraint("openid", "template_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    openid: Mapped[str] = mapped_column(String(64), index=True)
    template_id: Mapped[str] = mapped_column(String(128))
    state: Mapped[str] = mapped_column(String(16))  # CONSENT_STATES
    grants: Mapped[int] = mapped_column(default=0)  # acceptances since the last refusal
    source: Mapped[str] = mapped_column(String(32))  # where: h5_popup, article_popup, settings, page, refused_43101
    granted_at: Mapped[datetime | None]  # the last acceptance
    first_granted_at: Mapped[datetime | None]
    refused_at: Mapped[datetime | None]
    sent: Mapped[int] = mapped_column(default=0)  # notices sent under those grants
    last_sent_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class PausedKind(Base):
    __tablename__ = "paused_kinds"

    kind: Mapped[str] = mapped_column(String(32), primary_key=True)
    template_id: Mapped[str] = mapped_column(String(128))
    reason: Mapped[str] = mapped_column(String(255))
    paused_at: Mapped[datetime] = mapped_column(default=utcnow)


class Announcement(Base):
    __tablename__ = "announcements"

    id: Mapped[int] = mapped_column(primary_key=True)
    subject: Mapped[str] = mapped_column(String(64))
    body: Mapped[str] = mapped_column(Text)
    audience: Mapped[str] = mapped_column(String(16))  # AUDIENCES
    audience_ref: Mapped[str] = mapped_column(String(64), default="")  # community/team code, skill code
    team_id: Mapped[int] = mapped_column(ForeignKey("teams.id"), index=True)  # the author's team: its name signs it
    author_id: Mapped[int] = mapped_column(ForeignKey("coordinators.id"))
    state: Mapped[str] = mapped_column(String(16), default="draft", index=True)
    mass_send: Mapped[bool] = mapped_column(default=False)  # also 群发 by tag
    mass_month: Mapped[str | None] = mapped_column(String(7), index=True)  # "2026-12": the month's quota it counts in
    mass_state: Mapped[str | None] = mapped_column(String(16))  # queued | sent | failed
    decided_by: Mapped[int | None] = mapped_column(ForeignKey("coordinators.id"))
    decided_at: Mapped[datetime | None]
    decision_note: Mapped[str | None] = mapped_column(String(200))
    recipients: Mapped[int] = mapped_column(default=0)  # notices recorded (consenting followers)
    skipped: Mapped[int] = mapped_column(default=0)  # in the audience but without consent
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    submitted_at: Mapped[datetime | None]
    sent_at: Mapped[datetime | None]

    @property
    def batch(self) -> str:
        return f"announcement-{self.id}"
