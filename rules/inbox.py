"""The staff inbox: messages residents leave for a human (after three wrong answers in a
form) reach the coordinators responsible for them, and come back answered.

- **Routing** (`leave`): a message goes to the team of the resident's community (the
  deepest such team), or to the top of the tree when the resident has no community or
  the community no team. Its coordinators reachable in chat get a template message at
  once (the channel WeChat allows for service notices to people who follow the account);
  when nobody there is bound to WeChat, the nearest team above with someone who is.
- **Scope**: a message is seen by the coordinators whose subtree holds its team, like
  every console row (`rules.access`): its own team and those above.
- **Answering** (`answer`): a customer-service message (`message/custom/send`), which
  WeChat accepts only within 48 hours of the resident's last message (`window_until`).
  Outside the window the answer is refused with the reason; the coordinator phones.
- **Handling** (`mark_handled`): closed with a note (a phone call made, a visit paid).
- **Escalation** (`run_due`, in the scheduler's DUE_WORK): a message neither answered nor
  handled for one working day is told to the coordinators one level up, and again a
  working day later to the next, until the top. A working day is 24 hours of Monday to
  Friday, Beijing time (`working_day_after`): left on Friday at 17:00, it escalates on
  Monday at 17:00. Public holidays are not known here and count as working days.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from store.dead_letters import drain
from store.models import Coordinator, CoordinatorMessage, Follower, Push, Team
from store.outbox import notify, withdraw

CHINA = ZoneInfo("Asia/Shanghai")
MESSAGE_LIMIT = 1000  # characters of a message left for staff that are kept
ANSWER_LIMIT = 500  # characters of an answer (WeChat takes 2048 bytes of text)
NOTE_LIMIT = 200
WINDOW = timedelta(hours=48)  # WeChat's customer-service window after a user's message
WORKING_DAY = timedelta(hours=24)
NOTICE_KIND = "inbox_message"  # template message to coordinators (menus/templates.yaml)
ANSWER_KIND = "inbox_answer"  # customer-service text to the resident (pushes.worker.TEXT_KINDS)


class InboxError(ValueError):
    """Why an action was refused; the message is fit for the console and chat."""


# ---- time ------------------------------------------------------------------------------

def working_day_after(start: datetime) -> datetime:
    """The instant one working day (24 hours of Monday-Friday, Beijing time) after `start`."""
    at, left = start.astimezone(CHINA), WORKING_DAY
    while left > timedelta(0):
        midnight = datetime.combine(at.date() + timedelta(days=1), time(0), tzinfo=CHINA)
        if at.weekday() < 5:
            step = min(left, midnight - at)
            left -= step
            at += step
        else:
            at = midnight
    return at


def window_until(message: CoordinatorMessage, follower: Follower | None) -> datetime | None:
    """Until when a customer-service message can reach the resident: 48 hours after their
    last message we know of (the message itself was one). None when they left us."""
    if follower is None or not follower.subscribed:
        return None
    last = max(t for t in (message.created_at, follower.last_message_at) if t is not None)
    return last + WINDOW


def window_open(message: CoordinatorMessage, follower: Follower | None, now: datetime) -> bool:
    until = window_until(message, follower)
    return until is not None and now < until


# ---- routing ---------------------------------------------------------------------------

def responsible_team(session: Session, follower: Follower) -> Team | None:
    """The team of the resident's community (the deepest one), else the top of the tree."""
    if follower.community_id is not None:
        teams = list(session.scalars(select(Team).where(Team.community_id == follower.community_id)))
        if teams:
            return max(teams, key=lambda t: (t.path.count("/"), -t.id))
    return session.scalar(select(Team).where(Team.parent_id.is_(None)).order_by(Team.id).limit(1))


def ancestors(team: Team) -> list[int]:
    """The ids of `team` and the teams above it, nearest first."""
    return [int(i) for i in reversed(team.path.strip("/").split("/")) if i]


def reachable(session: Session, team_id: int) -> list[Coordinator]:
    """Active coordinators of one team who are bound to WeChat."""
    return list(session.scalars(select(Coordinator).where(
        Coordinator.team_id == team_id, Coordinator.active.is_(True), Coordinator.follower_id.is_not(None))
        .order_by(Coordinator.id)))


def leave(session: Session, follower: Follower, *, flow: str, step: str, text: str,
          now: datetime) -> CoordinatorMessage:
    """Keep a message for staff, route it and tell its coordinators (in this transaction)."""
    team = responsible_team(session, follower)
    message = CoordinatorMessage(follower_id=follower.id, flow=flow, step=step, text=text.strip()[:MESSAGE_LIMIT],
                                 team_id=team.id if team else None, created_at=now,
                                 escalate_at=working_day_after(now) if team and team.parent_id else None)
    session.add(message)
    session.flush()
    if team is not None:
        for team_id in ancestors(team):  # nobody bound here: the nearest level up that has someone
            if _tell(session, message, team_id, "居民留言待处理", tag="new"):
                break
    return message


def _tell(session: Session, message: CoordinatorMessage, team_id: int, title: str, *, tag: str) -> int:
    """A notice of `message` to the reachable coordinators of one team; how many."""
    coordinators = reachable(session, team_id)
    follower = message.follower
    community = follower.community.name if follower is not None and follower.community else "未填社区"
    for coord in coordinators:
        notify(session, openid=coord.follower.openid, kind=NOTICE_KIND, title=title,
               # Not the resident's words: a notice outlives their erasure (see `erase`).
               fields={"community": community,
                       "time": message.created_at.astimezone(CHINA).strftime("%Y-%m-%d %H:%M"),
                       "hint": f"请在管理后台“留言”中查看处理（第{message.id}条）"},
               dedup_key=f"inbox:{message.id}:{tag}:{coord.id}")
    return len(coordinators)


# ---- acting on a message -------------------------------------------------------------------

def mark_handled(session: Session, message: CoordinatorMessage, coordinator: Coordinator, note: str,
                 now: datetime) -> None:
    note = (note or "").strip()[:NOTE_LIMIT]
    if not note:
        raise InboxError("请写下处理情况（例如：已电话联系，明天上门）。")
    if message.handled:
        raise InboxError("这条留言已经处理过了。")
    message.handled, message.handled_at, message.handled_by, message.note = True, now, coordinator.id, note
    message.escalate_at = None


def answer(session: Session, message: CoordinatorMessage, coordinator: Coordinator, text: str,
           now: datetime) -> Push:
    """Answer the resident in chat (a customer-service message, sent by the worker)."""
    text = (text or "").strip()
    if not text:
        raise InboxError("请填写回复内容。")
    if len(text) > ANSWER_LIMIT:
        raise InboxError(f"回复请不超过{ANSWER_LIMIT}字。")
    if message.answered_at is not None:
        raise InboxError("这条留言已经回复过了；如需补充，请电话联系居民。")
    follower = message.follower
    if follower is None or not follower.subscribed:
        raise InboxError("居民已取消关注公众号，无法在聊天中回复，请电话联系。")
    if not window_open(message, follower, now):
        raise InboxError("居民最后一次发消息已超过48小时，微信不允许再发客服消息，请电话联系。")
    team = message.team.name if message.team else "工作人员"
    body = f"【工作人员回复】您的留言“{clip(message.text, 30)}”\n{text}\n——{team}"
    push = notify(session, openid=follower.openid, kind=ANSWER_KIND, title="工作人员回复",
                  fields={"text": body}, dedup_key=f"inbox:{message.id}:answer")
    message.answer, message.answered_at, message.answered_by = text, now, coordinator.id
    message.escalate_at = None
    return push


def answer_push(session: Session, message: CoordinatorMessage) -> Push | None:
    """The push that carries the message's answer (its state: sent, failed…)."""
    return session.scalar(select(Push).where(Push.dedup_key == f"inbox:{message.id}:answer"))


def clip(text: str, n: int) -> str:
    return text if len(text) <= n else text[:n] + "…"


# ---- escalation (the scheduler) --------------------------------------------------------------

def escalate(session: Session, message_id: int, now: datetime) -> int:
    """Tell the next level up about one unanswered message; 0 if another pass did it."""
    message = session.get(CoordinatorMessage, message_id)
    level = message.level
    # Conditional: two schedulers never escalate the same step twice.
    done = session.execute(update(CoordinatorMessage).where(
        CoordinatorMessage.id == message_id, CoordinatorMessage.level == level,
        CoordinatorMessage.escalate_at <= now, CoordinatorMessage.handled.is_(False),
        CoordinatorMessage.answered_at.is_(None)).values(level=level + 1, escalated_at=now)
        .execution_options(synchronize_session=False)).rowcount
    if not done:
        return 0
    session.refresh(message)
    chain = ancestors(message.team)[1:]  # the teams above the routed one, nearest first
    # One level per working day; a level without anyone bound to WeChat is passed over
    # (the message is still theirs to see in the console) for the next one up.
    reached = level
    for reached in range(level, len(chain)):
        if _tell(session, message, chain[reached], "居民留言超过1个工作日未回复", tag=f"up{reached + 1}"):
            break
    message.level = reached + 1
    message.escalate_at = working_day_after(now) if message.level < len(chain) else None
    return 1


def run_due(services) -> int:
    """Due work for the scheduler: escalate the messages whose working day ran out. Each in
    its own transaction; one that fails is set aside (store.dead_letters)."""
    now = services.clock.now()
    with services.db.transaction() as session:
        ids = list(session.scalars(select(CoordinatorMessage.id).where(
            CoordinatorMessage.escalate_at <= now, CoordinatorMessage.handled.is_(False),
            CoordinatorMessage.answered_at.is_(None)).order_by(CoordinatorMessage.escalate_at).limit(500)))
    result = drain(services, "inbox-escalate", ids, lambda session, mid: escalate(session, mid, now),
                   key=lambda mid: f"id:{mid}", show=str)
    if result.error is not None:
        raise result.error
    return result.applied


def erase(session: Session, follower: Follower) -> None:
    """On unsubscribe: the answers sent to them quote what they wrote; an unsent one is
    withdrawn, and the text of every one is blanked (their messages are deleted with them,
    handlers.welcome)."""
    withdraw(session, Push.openid == follower.openid, Push.kind == ANSWER_KIND, reason="erased: unsubscribed")
    session.execute(update(Push).where(Push.openid == follower.openid, Push.kind == ANSWER_KIND)
                    .values(data={}).execution_options(synchronize_session=False))


# ---- the resident's view -----------------------------------------------------------------------

@dataclass(frozen=True)
class Left:
    """One of a resident's messages as they see it."""

    at: datetime
    text: str
    answer: str | None
    handled: bool


def of_follower(session: Session, follower: Follower, limit: int = 5) -> list[Left]:
    rows = session.scalars(select(CoordinatorMessage).where(CoordinatorMessage.follower_id == follower.id)
                           .order_by(CoordinatorMessage.id.desc()).limit(limit))
    return [Left(m.created_at, m.text, m.answer, m.handled) for m in rows]
