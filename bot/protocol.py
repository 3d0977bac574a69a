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
OPENID_MAX = 64  # an OpenID is 28 characters; followers.openid holds 64
_FORBIDDEN_XML = re.compile(rb"<!\s*(DOCTYPE|ENTITY)", re.IGNORECASE)
# XML 1.0 forbids most control characters (and Python strings may carry lone surrogates,
# which UTF-8 cannot encode): user text must never carry them into a reply.
_XML_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


class BadRequest(Exception):
    """A push we refuse; `status` is the HTTP status to answer (always 4xx)."""

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
        Every failure is a BadRequest: 403 for signatures, 400 for the body.
        """
        self.verify(args, now)
        if not body.strip():
            raise BadRequest(400, "empty body")
        encrypted = args.get("encrypt_type", "raw").lower() == "aes"
        if encrypted:
            if self.crypto is None:
                raise BadRequest(400, "safe mode is not configured")
            msg_signature = args.get("msg_signature", "")
            if not msg_signature:
                raise BadRequest(403, "missing msg_signature")
            envelope = _checked_xml(body)
            try:
                xml = self.crypto.decrypt_message(envelope, msg_signature, args["timestamp"], args["nonce"])
            except InvalidSignatureException:
                raise BadRequest(403, "bad msg_signature")
            except InvalidAppIdException:
                raise BadRequest(403, "wrong appid in ciphertext")
            except Exception:  # noqa: BLE001 - wechatpy raises IndexError/ValueError/KeyError on garbage
                raise BadRequest(400, "undecryptable body")
            xml = _checked_xml(xml.encode("utf-8", "surrogatepass") if isinstance(xml, str) else xml)
        else:
            xml = _checked_xml(body)
        return self.parse(xml), encrypted

    @staticmethod
    def parse(xml: str) -> Message | None:
        """Plain push XML → Message (None for types we do not handle); BadRequest if broken."""
        try:
            raw = parse_message(xml)
        except Exception:  # noqa: BLE001 - ExpatError, KeyError (no MsgType), ValueError (entities)...
            raise BadRequest(400, "malformed XML")
        if raw is None or not isinstance(raw._data, dict):
            raise BadRequest(400, "empty body")
        return to_message(raw)

    # ---- outbound -------------------------------------------------------------------

    def render(self, reply: Reply, message: Message, to_app: str, encrypted: bool,
               nonce: str, timestamp: int | None = None) -> str:
        """The HTTP body for a reply: "success" when empty, XML otherwise (encrypted if the
        push was; WeChat wants "success" itself unencrypted)."""
        content = fit_text(reply.text)
        if not content and reply.article is None:
            return "success"
        timestamp = int(time.time()) if timestamp is None else timestamp
        ids = dict(source=cdata_safe(to_app), target=cdata_safe(message.openid), time=timestamp)
        if reply.article is not None:
            a = reply.article
            xml_reply = ArticlesReply(**ids)
            xml_reply.add_article({
                "title": cdata_safe(a.title), "description": cdata_safe(fit_text(a.description)),
                "image": cdata_safe(a.pic_url), "url": cdata_safe(a.url),
            })
        else:
            xml_reply = TextReply(content=cdata_safe(content), **ids)
        xml = xml_reply.render()
        if encrypted and self.crypto is not None:
            return self.crypto.encrypt_message(xml, nonce, timestamp)
        return xml


def _checked_xml(data: bytes) -> str:
    """UTF-8 text without DOCTYPE/ENTITY (XXE, billion laughs), else BadRequest."""
    if _FORBIDDEN_XML.search(data):
        raise BadRequest(400, "DOCTYPE or ENTITY in XML")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest(400, "body is not UTF-8")


def fit_text(text: str, limit: int = TEXT_LIMIT) -> str:
    """Cut text to `limit` UTF-8 bytes at a character boundary, marking the cut."""
    text = _XML_ILLEGAL.sub("", text or "")
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


def _int(value) -> int:
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        return 0


def _str(data: dict, key: str) -> str:
    """A field's text; xmltodict gives None for empty and a dict for nested elements."""
    value = data.get(key)
    return value.strip() if isinstance(value, str) else ""


MESSAGE_KINDS = {"text": t.TEXT, "voice": t.VOICE, "image": t.IMAGE, "video": t.VIDEO,
                 "shortvideo": t.VIDEO, "location": t.LOCATION, "link": t.LINK, "file": t.FILE}
# Events the app acts on, by their lower-cased wire name (wechatpy renames a subscribe
# through a parametric QR code to "subscribe_scan" and strips "qrscene_" from its key).
KNOWN_EVENTS = {"subscribe", "subscribe_scan", "unsubscribe", "scan", "location", "click",
                "view", "scancode_push", "scancode_waitmsg", "location_select",
                "templatesendjobfinish"}


def to_message(raw) -> Message | None:
    """wechatpy message/event object → plain `Message` (the account id kept in extra), or
    None for a type the app does not handle (it is acknowledged with "success")."""
    data = raw._data
    openid = _str(data, "FromUserName")
    if not openid or len(openid) > OPENID_MAX:
        raise BadRequest(400, "missing or oversized FromUserName")
    common = dict(openid=openid, msg_id=_int(data.get("MsgId")), create_time=_int(data.get("CreateTime")),
                  extra={"to_user": _str(data, "ToUserName")})
    msg_type = _str(data, "MsgType").lower()
    if msg_type == "event":
        return _event(_str(data, "Event").lower(), data, common)
    kind = MESSAGE_KINDS.get(msg_type)
    if kind is None:
        return None
    extra = common.pop("extra")
    if kind == t.TEXT:
        return Message(kind=kind, text=_str(data, "Content"), extra=extra, **common)
    if kind == t.VOICE:
        # Recognition is only present when speech recognition is on (being retired).
        extra["media_id"] = _str(data, "MediaId")
        return Message(kind=kind, text=_str(data, "Recognition"), extra=extra, **common)
    if kind == t.LOCATION:
        label = _str(data, "Label")
        loc = _location(data.get("Location_X"), data.get("Location_Y"), label)
        return Message(kind=kind, location=loc, text=label, extra=extra, **common)
    if kind == t.LINK:
        extra.update(url=_str(data, "Url"), description=_str(data, "Description"))
        return Message(kind=kind, text=_str(data, "Title"), extra=extra, **common)
    if kind == t.FILE:
        extra.update(description=_str(data, "Description"), file_key=_str(data, "FileKey"))
        return Message(kind=kind, text=_str(data, "Title"), extra=extra, **common)
    extra.update(media_id=_str(data, "MediaId"), pic_url=_str(data, "PicUrl"), type=msg_type)
    return Message(kind=kind, extra=extra, **common)


def _location(lat, lng, label: str = "") -> Location | None:
    lat, lng = _float(lat), _float(lng)
    if lat is None or lng is None or not (-90 <= lat <= 90 and -180 <= lng <= 180):
        return None
    return Location(lat, lng, label)


def _event(ev: str, data: dict, common: dict) -> Message | None:
    if ev not in KNOWN_EVENTS:
        return None
    key = _str(data, "EventKey")
    if ev == "subscribe_scan":
        return Message(kind=t.EVENT, event=t.SUBSCRIBE, key=key, **common)
    if ev == "subscribe":
        # A non-QR EventKey (e.g. "last_trade_no_…" after WeChat Pay) is not a scene.
        return Message(kind=t.EVENT, event=t.SUBSCRIBE, **common)
    if ev == "scan":
        return Message(kind=t.EVENT, event=t.SCAN, key=key, **common)
    if ev == "location":
        loc = _location(data.get("Latitude"), data.get("Longitude"))
        return Message(kind=t.EVENT, event=t.LOCATION_REPORT, location=loc, **common)
    if ev in ("scancode_push", "scancode_waitmsg"):
        info = data.get("ScanCodeInfo") if isinstance(data.get("ScanCodeInfo"), dict) else {}
        common["extra"]["scan_type"] = _str(info, "ScanType")
        return Message(kind=t.EVENT, event=t.SCANCODE, key=key, text=_str(info, "ScanResult"), **common)
    if ev == "location_select":
        info = data.get("SendLocationInfo") if isinstance(data.get("SendLocationInfo"), dict) else {}
        label = _str(info, "Label")
        loc = _location(info.get("Location_X"), info.get("Location_Y"), label)
        return Message(kind=t.EVENT, event=t.LOCATION_SELECT, key=key, location=loc, text=label, **common)
    if ev == "templatesendjobfinish":
        # The template message's id is "MsgID" (capital D): not a MsgId, so dedup by event.
        return Message(kind=t.EVENT, event=t.TEMPLATE_FINISH, key=_str(data, "MsgID"),
                       text=_str(data, "Status"), **common)
    return Message(kind=t.EVENT, event=ev, key=key, **common)  # click, view, unsubscribe
