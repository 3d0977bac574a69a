"""The plain message and reply types every journey speaks."""

from __future__ import annotations

from dataclasses import dataclass, field

# Message kinds
TEXT, VOICE, IMAGE, VIDEO, LOCATION, LINK, FILE, EVENT, UNKNOWN = (
    "text", "voice", "image", "video", "location", "link", "file", "event", "unknown",
)
# Event names (lower case, as wechatpy gives them, with our own names for a few)
SUBSCRIBE = "subscribe"  # key = QR scene ("" for a plain follow)
UNSUBSCRIBE = "unsubscribe"
SCAN = "scan"  # key = QR scene, already following
LOCATION_REPORT = "location"  # auto-reported position: no reply
CLICK = "click"
VIEW = "view"
SCANCODE = "scancode"  # scancode_push / scancode_waitmsg; key = menu key, text = result
LOCATION_SELECT = "location_select"
TEMPLATE_FINISH = "templatesendjobfinish"
# Subscribe-notice events; extra["notices"] = [{template_id, status, scene, error_code, error_status}]
NOTICE_POPUP = "notice_popup"  # the user tapped 允许/取消 on a subscribe button
NOTICE_CHANGE = "notice_change"  # the user turned a notice off in the settings
NOTICE_SENT = "notice_sent"  # the outcome of a notice we sent


@dataclass(frozen=True)
class Location:
    lat: float
    lng: float
    label: str = ""


@dataclass(frozen=True)
class Message:
    """One inbound push from a user, whatever its WeChat type."""

    openid: str
    kind: str = TEXT
    text: str = ""  # text content, or a voice message's recognised text
    event: str = ""  # for kind == "event"
    key: str = ""  # event key / QR scene (without "qrscene_") / menu key
    location: Location | None = None
    msg_id: int = 0
    create_time: int = 0
    extra: dict = field(default_factory=dict, compare=False)

    @property
    def is_event(self) -> bool:
        return self.kind == EVENT

    @property
    def dedup_key(self) -> str:
        """WeChat's retry identity: MsgId for messages, sender+time+event+key for events."""
        if self.extra.get("heard"):
            return f"h:{self.extra['heard']}"  # the transcript of voice message `heard` (bot/speech.py)
        if self.msg_id:
            return f"m:{self.msg_id}"
        return f"e:{self.openid}:{self.create_time}:{self.event}:{self.key}"


@dataclass(frozen=True)
class Article:
    title: str
    description: str = ""
    url: str = ""
    pic_url: str = ""


@dataclass(frozen=True)
class Reply:
    """What to answer. An empty reply is acknowledged with "success" (nothing shown)."""

    text: str = ""
    article: Article | None = None

    @property
    def is_empty(self) -> bool:
        return not self.text and self.article is None

    def to_dict(self) -> dict:
        d: dict = {"text": self.text}
        if self.article:
            d["article"] = self.article.__dict__
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Reply":
        art = d.get("article")
        return cls(text=d.get("text", ""), article=Article(**art) if art else None)


SILENT = Reply()
BUSY = Reply("系统繁忙，请稍后再试。")
