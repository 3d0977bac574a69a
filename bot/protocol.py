"""The WeChat protocol, done by wechatpy: signatures, safe-mode crypto, parsing, replies.

This is the only module that turns wire XML into `dialogue.Message` and `dialogue.Reply`
back into XML. Everything wechatpy may raise on hostile input is caught here and turned
into a `BadRequest` carrying the HTTP status to answer with.
"""

from __future__ import annotations

import re
import time

from wechatpy import parse_message
from wechatpy.crypto import WeChatCrypto
from wechatpy.exceptions import InvalidAppIdException, InvalidSignatureException
from wechatpy.replies import ArticlesReply, TextReply
from wechatpy.utils import check_signature

from dialogue import types as t
from dialogue.types import Location, Message, Reply

TEXT_LIMIT = 2048  # bytes of UTF-8 in a passive text reply
_FORBIDDEN_XML = re.compile(rb"<!\s*(DOCTYPE|ENTITY)", re.IGNORECASE)
# XML 1.0 forbids most control characters; user text must never carry them into a reply.
_XML_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


class BadRequest(Exception):
    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status = status
        self.reason = reason


class Protocol:
    """One account's protocol settings: token, appid and (for safe mode) the AES key."""

    def __init__(self, token: str, appid: str, aes_key: str | None, timestamp_tolerance: int = 300):
        self.token = token
        self.appid = appid
        self.crypto = WeChatCrypto(token, aes_key, appid) if aes_key else None
        self.timestamp_tolerance = timestamp_tolerance

    # ---- inbound --------------------------------------------------------------------

    def verify(self, args, now: float | None = None) -> None:
        """Check `signature` (plain query) and the timestamp window; raise BadRequest."""
        signature, timestamp, nonce = (args.get(k, "") for k in ("signature", "timestamp", "nonce"))
        if not (signature and timestamp and nonce):
            raise BadRequest(403, "missing signature")
        try:
            check_signature(self.token, signature, timestamp, nonce)
        except InvalidSignatureException:
            raise BadRequest(403, "bad signature")
        self._check_timestamp(timestamp, now)

    def _check_timestamp(self, timestamp: str, now: float | None) -> None:
        if not self.timestamp_tolerance:
            return
        try:
            ts = int(timestamp)
        except ValueError:
            raise BadRequest(403, "bad timestamp")
        now = time.time() if now is None else now
        if abs(now - ts) > self.timestamp_tolerance:
            raise BadRequest(403, "stale timestamp")

    def read(self, args, body: bytes, now: float | None = None) -> tuple[Message | None, bool]:
        """Verify, decrypt and parse a POST body. Returns (message or None, encrypted?).

        None means a well-formed push of a type we do not handle (answer "success").
        """
        self.verify(args, now)
        if _FORBIDDEN_XML.search(body):
            raise BadRequest(400, "DOCTYPE or ENTITY in XML")
        try:
            body.decode("utf-8")
        except UnicodeDecodeError:
            raise BadRequest(400, "body is not UTF-8")
        encrypted = args.get("encrypt_type", "raw").lower() == "aes"
        if encrypted:
            if self.crypto is None:
                raise BadRequest(400, "safe mode is not configured")
            msg_signature = args.get("msg_signature", "")
            if not msg_signature:
                raise BadRequest(403, "missing msg_signature")
            try:
                xml = self.crypto.decrypt_message(body, msg_signature, args["timestamp"], args["nonce"])
            except InvalidSignatureException:
                raise BadRequest(403, "bad msg_signature")
            except InvalidAppIdException:
                raise BadRequest(403, "wrong appid in ciphertext")
            except Exception:  # wechatpy raises IndexError/ValueError/KeyError on garbage
                raise BadRequest(400, "undecryptable body")
            if isinstance(xml, bytes):
                xml = xml.decode("utf-8", "replace")
            if _FORBIDDEN_XML.search(xml.encode("utf-8")):
                raise BadRequest(400, "DOCTYPE or ENTITY in XML")
        else:
            xml = body.decode("utf-8")
        try:
            raw = parse_message(xml)
        except Exception:  # ExpatError, KeyError (no MsgType), ValueError (entities)...
            raise BadRequest(400, "malformed XML")
        if raw is None:
            raise BadRequest(400, "empty body")
        if not getattr(raw, "source", None):
            raise BadRequest(400, "no FromUserName")
        return to_message(raw), encrypted

    # ---- outbound -------------------------------------------------------------------

    def render(self, reply: Reply, message: Message, to_app: str, encrypted: bool,
               nonce: str, timestamp: int | None = None) -> str:
        """The HTTP body for a reply: "success" when empty, XML otherwise (encrypted if the
        push was)."""
        if reply.is_empty:
            return "success"
        timestamp = int(time.time()) if timestamp is None else timestamp
        if reply.article is not None:
            a = reply.article
            xml_reply = ArticlesReply(source=to_app, target=message.openid, time=timestamp)
            xml_reply.add_article({
                "title": cdata_safe(a.title), "description": cdata_safe(a.description),
                "image": cdata_safe(a.pic_url), "url": cdata_safe(a.url),
            })
        else:
            xml_reply = TextReply(source=to_app, target=message.openid, time=timestamp,
                                  content=cdata_safe(fit_text(reply.text)))
        xml = xml_reply.render()
        if encrypted and self.crypto is not None:
            return self.crypto.encrypt_message(xml, nonce, timestamp)
        return xml


def fit_text(text: str, limit: int = TEXT_LIMIT) -> str:
    """Cut text to `limit` UTF-8 bytes at a character boundary, marking the cut."""
    data = text.encode("utf-8")
    if len(data) <= limit:
        return text
    mark = "…"
    room = limit - len(mark.encode("utf-8"))
    return data[:room].decode("utf-8", "ignore") + mark


def cdata_safe(text: str) -> str:
    """Text that can sit inside <![CDATA[...]]>: split "]]>" and drop XML-illegal chars.

    wechatpy writes values into CDATA without escaping (its known bug), so "]]>" in user
    text would end the section early and break the XML."""
    text = _XML_ILLEGAL.sub("", text or "")
    return text.replace("]]>", "]]]]><![CDATA[>")


def _float(value) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def to_message(raw) -> Message:
    """wechatpy message/event object → plain `Message` (the account id kept in extra)."""
    message = _to_message(raw)
    message.extra["to_user"] = raw.target or ""
    return message


def _to_message(raw) -> Message:
    common = dict(openid=raw.source, msg_id=int(getattr(raw, "id", 0) or 0),
                  create_time=int(getattr(raw, "time", 0) or 0))
    kind = raw.type
    if kind == "text":
        return Message(kind=t.TEXT, text=raw.content or "", **common)
    if kind == "voice":
        recognition = (raw.recognition or "").strip() if hasattr(raw, "recognition") else ""
        return Message(kind=t.VOICE, text=recognition, extra={"media_id": raw.media_id}, **common)
    if kind == "location":
        lat, lng = _float(raw.location_x), _float(raw.location_y)
        loc = Location(lat, lng, raw.label or "") if lat is not None and lng is not None else None
        return Message(kind=t.LOCATION, location=loc, text=raw.label or "", **common)
    if kind in ("image", "video", "shortvideo"):
        return Message(kind=t.IMAGE if kind == "image" else t.VIDEO,
                       extra={"media_id": getattr(raw, "media_id", "")}, **common)
    if kind == "link":
        return Message(kind=t.LINK, text=raw.title or "", extra={"url": raw.url}, **common)
    if kind == "file":
        return Message(kind=t.FILE, text=raw._data.get("Title", ""), **common)
    if kind == "event":
        return _event(raw, common)
    return Message(kind=t.UNKNOWN, extra={"type": kind}, **common)


def _event(raw, common: dict) -> Message:
    ev = raw.event
    data = raw._data
    key = str(data.get("EventKey") or "")
    if ev == "subscribe_scan":
        return Message(kind=t.EVENT, event=t.SUBSCRIBE, key=raw.scene_id or "", **common)
    if ev == "subscribe":
        # A non-QR EventKey (e.g. "last_trade_no_…" after WeChat Pay) is not a scene.
        return Message(kind=t.EVENT, event=t.SUBSCRIBE, **common)
    if ev == "scan":
        return Message(kind=t.EVENT, event=t.SCAN, key=raw.scene_id or "", **common)
    if ev == "location":
        lat, lng = _float(data.get("Latitude")), _float(data.get("Longitude"))
        loc = Location(lat, lng) if lat is not None and lng is not None else None
        return Message(kind=t.EVENT, event=t.LOCATION_REPORT, location=loc, **common)
    if ev in ("scancode_push", "scancode_waitmsg"):
        info = data.get("ScanCodeInfo") or {}
        return Message(kind=t.EVENT, event=t.SCANCODE, key=key,
                       text=str(info.get("ScanResult") or ""), **common)
    if ev == "location_select":
        info = data.get("SendLocationInfo") or {}
        lat, lng = _float(info.get("Location_X")), _float(info.get("Location_Y"))
        loc = Location(lat, lng, str(info.get("Label") or "")) if lat is not None and lng is not None else None
        return Message(kind=t.EVENT, event=t.LOCATION_SELECT, key=key, location=loc, **common)
    if ev == "templatesendjobfinish":
        return Message(kind=t.EVENT, event=t.TEMPLATE_FINISH, key=str(data.get("MsgID") or ""),
                       text=str(data.get("Status") or ""), **common)
    return Message(kind=t.EVENT, event=ev, key=key, **common)
