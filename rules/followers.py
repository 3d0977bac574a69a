"""The people who follow the account: their row, created on first contact, and the messages
they leave for staff. This module is what the dialogue engine records through (its `Records`
port, `dialogue.context`): the engine itself knows no model. The shell passes one
`TurnRecords` per turn, which knows the turn's time and whether the user sent a message.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from rules import inbox
from store.models import Follower

# Built once: building this select cost more than running it (312 against 144 us here).
_FOLLOWER = select(Follower).where(Follower.openid == bindparam("openid"))

# last_message_at is kept to the minute: a turn writes it only when it is older than this,
# so a chatting user costs one UPDATE a minute, not one a turn.
SEEN_PRECISION = timedelta(minutes=1)


def follower(session: Session, openid: str, now: datetime) -> Follower:
    """This user's follower row, created (as subscribed) on first contact."""
    f = session.scalar(_FOLLOWER, {"openid": openid})
    if f is None:
        f = Follower(openid=openid, subscribed=True, subscribed_at=now)
        session.add(f)
        session.flush()
    return f


def seen(follower: Follower, now: datetime) -> None:
    """The user sent a message now (it opens WeChat's 48-hour customer-service window)."""
    if follower.last_message_at is None or now - follower.last_message_at >= SEEN_PRECISION:
        follower.last_message_at = now


@dataclass(frozen=True)
class TurnRecords:
    """The Records port for one turn: the follower row, loaded when a journey needs it, notes
    that the user messaged us (only on a turn that is a message, not an event, and only where
    the row is loaded anyway: no extra query); a message left for staff gets the turn's time."""

    now: datetime
    message: bool  # the turn is something the user sent (text, voice, location, picture)

    def follower(self, session: Session, openid: str, now: datetime) -> Follower:
        f = follower(session, openid, now)
        if self.message:
            seen(f, now)
        return f

    def leave_message(self, session: Session, follower: Follower, *, flow: str, step: str, text: str) -> None:
        """Keep a message for a coordinator, with the form and step it was left from ("" outside
        a form), routed and told to its coordinators (rules.inbox)."""
        inbox.leave(session, follower, flow=flow, step=step, text=text, now=self.now)
