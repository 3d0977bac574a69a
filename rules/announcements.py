"""Announcements (政府信息推送): a coordinator writes one to an audience within their
subtree, previews it as the phone shows it, a level above approves it (ANNOUNCEMENT_APPROVAL
= parent; `none` lets the author send), and it goes out

- as a subscribe notice (kind `announcement`) to those in the audience who consented to
  its notice template — the rest are counted as skipped, never sent to;
- where chosen, also as a mass send (群发 by tag, kind `announcement_mass`): one push row the
  worker turns into a tag of the audience and one `message/mass/sendall`. A service account
  may mass-send 4 times a month: each approved mass send is counted against its month when
  approved, and a fifth is refused.

Audiences: `subtree` — the followers of the author's subtree (its volunteers, and residents
of its communities); `community` — residents of one community and its bus subscribers;
`team` — the volunteers of a team and the teams below it; `skill` — the subtree's
volunteers with a skill (a needs-menu category code).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from rules import notices
from rules.access import Scope
from store.models import Announcement, BusSubscription, Community, Coordinator, Follower, Push, Team, Volunteer
from store.outbox import notify, notify_many

CHINA = timezone(timedelta(hours=8))
SUBJECT_MAX = 20  # it is the notice's first `thing` field: WeChat shows 20 characters
BODY_MAX = 600  # a mass-send text; the notice shows its first 20 characters
AUDIENCE_NAMES = {"subtree": "本级及下级的全部关注者", "community": "一个社区", "team": "一支队伍",
                  "skill": "具备某项技能的志愿者"}
KIND, MASS_KIND = "announcement", "announcement_mass"


class AnnouncementError(ValueError):
    """Something a coordinator can fix; the message is for them (Chinese)."""


def _team(session: Session, scope: Scope) -> Team:
    return session.get(Team, scope.team_id)


def _check_audience(session: Session, scope: Scope, audience: str, ref: str) -> str:
    ref = (ref or "").strip()
    if audience not in AUDIENCE_NAMES:
        raise AnnouncementError("请选择发送对象。")
    if audience == "subtree":
        return ""
    if not ref:
        raise AnnouncementError("请选择具体的社区、队伍或技能。")
    if audience == "community":
        community = session.scalar(select(Community).where(Community.code == ref))
        if community is None or (not scope.is_district and community.id not in scope.community_ids):
            raise AnnouncementError("只能发给本级管辖范围内的社区。")
    if audience == "team":
        team = session.scalar(select(Team).where(Team.code == ref))
        if team is None or team.id not in scope.team_ids:
            raise AnnouncementError("只能发给本级及下级队伍。")
    return ref[:64]


def draft(session: Session, scope: Scope, *, subject: str, body: str, audience: str, audience_ref: str = "",
          mass_send: bool = False, now: datetime) -> Announcement:
    subject, body = " ".join((subject or "").split()), (body or "").strip()
    if not subject:
        raise AnnouncementError("请填写通知事项（标题）。")
    if len(subject) > SUBJECT_MAX:
        raise AnnouncementError(f"通知事项请不超过{SUBJECT_MAX}字（手机上只显示{SUBJECT_MAX}字）。")
    if not body:
        raise AnnouncementError("请填写通知内容。")
    if len(body) > BODY_MAX:
        raise AnnouncementError(f"通知内容请不超过{BODY_MAX}字。")
    ref = _check_audience(session, scope, audience, audience_ref)
    a = Announcement(subject=subject, body=body, audience=audience, audience_ref=ref, team_id=scope.team_id,
                     author_id=scope.coordinator_id, state="draft", mass_send=bool(mass_send), created_at=now)
    session.add(a)
    session.flush()
    return a


def fields(session: Session, a: Announcement) -> dict[str, str]:
    """The push fields of the notice (menus/templates.yaml maps them to the template)."""
    team = session.get(Team, a.team_id)
    when = (a.sent_at or a.submitted_at or a.created_at).astimezone(CHINA)
    summary = " ".join(a.body.split())
    return {"subject": a.subject, "sender": team.name if team else "", "time": f"{when:%Y年%m月%d日 %H:%M}",
            "summary": summary}


def mass_text(session: Session, a: Announcement) -> str:
    team = session.get(Team, a.team_id)
    return f"【{a.subject}】\n{a.body}\n——{team.name if team else ''}"


def preview(session: Session, a: Announcement, catalog) -> dict:
    """The announcement as the phone shows it: the notice card's lines (fitted as WeChat
    fits them) and, if chosen, the mass-send text; with how many it would reach now."""
    kind = catalog.kind(KIND)
    audience = audience_openids(session, a)
    reach = notices.consenting(session, audience, kind.template_id, kind.consent)
    return {"notice": kind.preview(fields(session, a)), "mass": mass_text(session, a) if a.mass_send else None,
            "audience": len(audience), "consenting": len(reach)}


# ---- who it goes to --------------------------------------------------------------------------------

def audience_openids(session: Session, a: Announcement) -> list[str]:
    """The openids of the announcement's audience who still follow the account."""
    team = session.get(Team, a.team_id)
    subtree = select(Team.id).where(Team.path.startswith(team.path, autoescape=True))
    volunteers = select(Follower.openid).join(Volunteer, Volunteer.follower_id == Follower.id)
    reachable = (Follower.subscribed.is_(True), Follower.push_blocked.is_(None))
    if a.audience == "team":
        root = session.scalar(select(Team).where(Team.code == a.audience_ref))
        below = select(Team.id).where(Team.path.startswith(root.path, autoescape=True))
        q = volunteers.where(Volunteer.team_id.in_(below), Volunteer.state == "active", *reachable)
    elif a.audience == "skill":
        rows = session.execute(volunteers.add_columns(Volunteer.skills)
                               .where(Volunteer.team_id.in_(subtree), Volunteer.state == "active", *reachable)).all()
        return sorted({o for o, skills in rows if a.audience_ref in (skills or [])})
    elif a.audience == "community":
        community = session.scalar(select(Community).where(Community.code == a.audience_ref))
        subscribers = select(BusSubscription.follower_id).where(BusSubscription.community_id == community.id)
        q = select(Follower.openid).where(or_(Follower.community_id == community.id, Follower.id.in_(subscribers)),
                                          *reachable)
    else:
        communities = select(Team.community_id).where(Team.id.in_(subtree), Team.community_id.is_not(None))
        is_root = team.parent_id is None
        residents = select(Follower.openid).where(*reachable) if is_root else \
            select(Follower.openid).where(Follower.community_id.in_(communities), *reachable)
        q = volunteers.where(Volunteer.team_id.in_(subtree), *reachable).union(residents)
        return sorted(set(session.scalars(q)))
    return sorted(set(session.scalars(q)))


# ---- approval and sending -------------------------------------------------------------------------

def submit(session: Session, a: Announcement, *, approval: str, monthly: int, now: datetime,
           catalog=None) -> Announcement:
    """Ask for approval (ANNOUNCEMENT_APPROVAL=parent), or send at once (none)."""
    if a.state not in ("draft", "rejected"):
        raise AnnouncementError("这条通知已经提交过了。")
    a.state, a.submitted_at = "submitted", now
    if approval == "none":
        return _approve(session, a, None, "", monthly, now, catalog)
    session.flush()
    return a


def may_decide(session: Session, a: Announcement, scope: Scope) -> bool:
    """Only a coordinator of a team above the author's team decides (not the author's own level)."""
    author_team = session.get(Team, a.team_id)
    return scope.team_id != a.team_id and author_team.path.startswith(scope.path)


def decide(session: Session, a: Announcement, scope: Scope, *, approve: bool, note: str = "", monthly: int,
           now: datetime, catalog=None) -> Announcement:
    if a.state != "submitted":
        raise AnnouncementError("这条通知不在待审核状态。")
    if not may_decide(session, a, scope):
        raise AnnouncementError("需要由上一级的协调员审核。")
    if not approve:
        a.state, a.decided_by, a.decided_at = "rejected", scope.coordinator_id, now
        a.decision_note = (note or "").strip()[:200] or "未通过"
        session.flush()
        return a
    return _approve(session, a, scope.coordinator_id, note, monthly, now, catalog)


def mass_sends_this_month(session: Session, now: datetime) -> int:
    month = now.astimezone(CHINA).strftime("%Y-%m")
    return int(session.scalar(select(func.count()).select_from(Announcement).where(
        Announcement.mass_month == month, Announcement.mass_state.in_(("queued", "sent")))) or 0)


def _approve(session: Session, a: Announcement, approver: int | None, note: str, monthly: int,
             now: datetime, catalog=None) -> Announcement:
    if a.mass_send:
        # Counted when approved, before anything is sent; a refused or failed mass send
        # frees its slot (mass_state failed is not counted).
        if mass_sends_this_month(session, now) >= monthly:
            raise AnnouncementError(f"本月群发次数已用完（服务号每月{monthly}次），可取消群发后只发订阅通知。")
        a.mass_month, a.mass_state = now.astimezone(CHINA).strftime("%Y-%m"), "queued"
    a.state, a.decided_by, a.decided_at = "approved", approver, now
    a.decision_note = (note or "").strip()[:200] or None
    send(session, a, now, catalog)
    return a


def send(session: Session, a: Announcement, now: datetime, catalog=None) -> int:
    """Record the notices (and the mass send) of an approved announcement; returns how many
    notices. Recorded once: the dedup keys are per announcement and person. `catalog` has
    the account's template ids (rules.notices.catalog_for): consent is per real template."""
    catalog = catalog or notices.catalog_for(None)
    kind = catalog.kind(KIND)
    a.sent_at = now
    audience = audience_openids(session, a)
    reach = notices.consenting(session, audience, kind.template_id, kind.consent)
    values = fields(session, a)
    count = notify_many(session, [dict(openid=o, kind=KIND, title=a.subject, fields=values, batch=a.batch,
                                       dedup_key=f"announcement:{a.id}:{o}") for o in audience if o in reach])
    a.recipients, a.skipped = len(reach), len(audience) - len(reach)
    if a.mass_send:
        notify(session, openid=f"tag:announcement-{a.id}", kind=MASS_KIND, title=a.subject,
               fields={"text": mass_text(session, a), "announcement": str(a.id)},
               dedup_key=f"announcement:{a.id}:mass", batch=f"{a.batch}-mass")
    a.state = "sent"
    session.flush()
    return count


def mass_outcome(session: Session, announcement_id: int, sent: bool) -> None:
    """The worker's word on the mass send: sent, or failed (its month's slot is freed)."""
    a = session.get(Announcement, announcement_id)
    if a is not None:
        a.mass_state = "sent" if sent else "failed"


def progress(session: Session, a: Announcement) -> dict:
    """Per announcement, for the console: its notices by outcome and the mass send."""
    counts = dict(session.execute(select(Push.state, func.count()).where(Push.batch == a.batch)
                                  .group_by(Push.state)).all())
    done = sum(counts.get(s, 0) for s in ("sent", "held", "delivered", "failed", "cancelled"))
    return {"id": a.id, "state": a.state, "recipients": a.recipients, "skipped": a.skipped,
            "total": sum(counts.values()), "done": done, "states": counts,
            "outcomes": notices.outcomes(session, Push.batch == a.batch),
            "mass": a.mass_state if a.mass_send else None}


def visible(session: Session, scope: Scope):
    """Announcements written in the coordinator's subtree (theirs and those below to approve)."""
    return select(Announcement).where(Announcement.team_id.in_(scope.team_ids))


def author_name(session: Session, a: Announcement) -> str:
    c = session.get(Coordinator, a.author_id)
    return c.name if c else ""
