"""What a journey sees during one turn: who, when, the SQL session, and a few services.

A `Ctx` lives for exactly one inbound message. Everything a handler writes goes through
`ctx.session`, which the shell commits once, before the reply goes out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable, Protocol
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from dialogue.state import ConversationState
from dialogue.types import Message, Reply

CHINA = ZoneInfo("Asia/Shanghai")



class Records(Protocol):
    """What the engine and the journeys record about the user, supplied by the shell (in
    production `rules.followers.TurnRecords`): the dialogue package knows no model."""

    def follower(self, session: Session, openid: str, now: datetime) -> Any:
        """The user's record, created on first contact."""

    def leave_message(self, session: Session, follower: Any, *, flow: str, step: str, text: str) -> None:
        """Keep a message for staff, with the form and step it was left from."""


@dataclass
class Settings:
    """The slice of configuration journeys may read (no protocol secrets)."""

    pii_key: Any = "dev-pii-key-change-me"  # a store.sealing.Keyring (or one secret: key v1)
    state_idle: int = 1800
    resume_window: int = 24 * 3600
    env: str = "development"
    dispatch: Any = None  # rules.dispatch.Settings, as configured
    attendance: Any = None  # rules.attendance.Settings, as configured
    timebank: Any = None  # rules.timebank.Policy, as configured
    notices_url: str = ""  # the page with WeChat's subscribe buttons, offered in chat (NOTICES_URL)
    template_ids: dict = field(default_factory=dict)  # kind -> the account's template id (WECHAT_TEMPLATE_<KIND>)
    pages_url: str = ""  # the web pages' base ("https://…/m"); "" = replies carry no page links


@dataclass
class Ctx:
    openid: str
    message: Message
    session: Session
    now: datetime  # aware UTC
    records: Records
    settings: Settings = field(default_factory=Settings)
    engine: Any = None  # dialogue.engine.Engine, to start flows
    state: ConversationState = field(default_factory=ConversationState)
    _after_commit: list[Callable[[], None]] = field(default_factory=list)
    _follower: Any = None

    @property
    def local_now(self) -> datetime:
        return self.now.astimezone(CHINA)

    @property
    def follower(self) -> Any:
        """This user's follower row (`store.models.Follower`), created on first contact."""
        if self._follower is None:
            self._follower = self.records.follower(self.session, self.openid, self.now)
        return self._follower

    def start(self, flow_name: str, **params) -> Reply:
        """Begin a flow and return its first question. An open form of another flow is set
        aside (offered back later); a set-aside form of this flow is offered back first
        (继续填写 / 重新开始). `params` go to the flow's `start` and must be JSON values."""
        return self.engine.start_flow(self, flow_name, params)

    def after_commit(self, fn: Callable[[], None]) -> None:
        """Run `fn` once the turn's transaction has committed (e.g. enqueue a push job)."""
        self._after_commit.append(fn)

    def run_after_commit(self) -> None:
        for fn in self._after_commit:
            fn()
        self._after_commit.clear()


def as_reply(value) -> Reply:
    if value is None:
        return Reply()
    if isinstance(value, Reply):
        return value
    return Reply(str(value))
