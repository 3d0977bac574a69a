"""The WeChat protocol, done by wechatpy: signatures, safe-mode crypto, parsing, replies.

This is the only module that turns wire XML into `dialogue.Message` and `dialogue.Reply`
back into XML. Everything wechatpy may raise on hostile input is caught here and turned
into a `BadRequest` carrying the HTTP status to answer with.

A valid signature says who sent a request, not that its values are sane: every query
parameter is checked against the shape WeChat gives it before it is used (a 4xx if it
does not fit), and every number in the XML is read by `store.bounded` (a value out of
shape reads as absent). Text fields stay text, bounded by the body limit; whoever stores
or parses one bounds it there.
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
from store.bounded import bounded_decimal, bounded_int

TEXT_LIMIT = 2048  # bytes of UTF-8 in a passive text reply
OPENID_MAX = 64  # an OpenID is 28 characters; followers.openid holds 64
ACCOUNT_MAX = 64  # ToUserName: the account's original id ("gh_" and 12 characters)
# The query as WeChat writes it: SHA-1 signatures in lower-case hex, a numeric nonce
# (alphanumeric allowed), epoch seconds, an OpenID, an echostr of digits (base64 in other
# WeChat products). Anything else is not WeChat's and is refused before it is used.
_SHA1_HEX = re.compile(r"[0-9a-f]{40}")
_NONCE = re.compile(r"[0-9A-Za-z]{1,64}")
_OPENID = re.compile(r"[0-9A-Za-z_-]{1,%d}" % OPENID_MAX)
_ECHOSTR = re.compile(r"[0-9A-Za-z+/=_-]{1,512}")
TIMESTAMP_MAX = 10**12 - 1  # epoch seconds have 10 digits until the year 2286
MSG_ID_MAX = 2**64 - 1  # a MsgId is an unsigned 64-bit number
ENCRYPT_TYPES = ("raw", "aes")
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
        """Check `signature` (plain query) and the timestamp window; raise BadRequest.

        The three values are checked for WeChat's shapes first: a signed request may still
        carry a 400-digit timestamp, which int() reads but float arithmetic cannot take."""
        signature, timestamp, nonce = (args.get(k, "") for k in ("signature", "timestamp", "nonce"))
        if not (signature and timestamp and nonce):
            raise BadRequest(403, "missing signature")
        if not (_SHA1_HEX.fullmatch(signature) and _NONCE.fullmatch(nonce)):
            raise BadRequest(403, "bad signature")
        ts = bounded_int(timestamp, 0, TIMESTAMP_MAX)
        if ts is None or timestamp != str(ts):
            raise BadRequest(403, "bad timestamp")
        try:
            check_signature(self.token, signature, timestamp, nonce)
        except InvalidSignatureException:
            raise BadRequest(403, "bad signature")
        now = time.time() if now is None else now
        if self.timestamp_tolerance and abs(now - ts) > self.timestamp_tolerance:
            raise BadRequest(403, "stale timestamp")

    def echo(self, args, now: float | None = None) -> str:
        """URL verification (GET): the `echostr` to answer with, once the query is verified."""
        self.verify(args, now)
        echostr = args.get("echostr", "")
        if echostr and not _ECHOSTR.fullmatch(echostr):
            raise BadRequest(400, "bad echostr")
        return echostr

    def read(self, args, body: bytes, now: float | None = None) -> tuple[Message | None, bool]:
        """Verify, decrypt and parse a POST body. Returns (message or None, encrypted?).

        None means a well-formed push of a type we do not handle (answer "success").
        Every failure is a BadRequest: 403 for signatures (and the values they sign), 400
        for the body and the other query values.
        """
        self.verify(args, now)
        encrypt_type = args.get("encrypt_type", "raw").lower()
        if encrypt_type not in ENCRYPT_TYPES:
            raise BadRequest(400, "unknown encrypt_type")
        openid = args.get("openid")
        if openid is not None and not _OPENID.fullmatch(openid):
            raise BadRequest(400, "bad openid")
        if not body.strip():
            raise BadRequest(400, "empty body")
        encrypted = encrypt_type == "aes"
        if encrypted:
            if self.crypto is None:
                raise BadRequest(400, "safe mode is not configured")
            msg_signature = args.get("msg_signature", "")
            if not msg_signature:
                raise BadRequest(403, "missing msg_signature")
            if not _SHA1_HEX.fullmatch(msg_signature):
                raise BadRequest(403, "bad msg_signature")
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
                "templatesendjobfinish", "subscribe_msg_popup_event", "subscribe_msg_change_event",
                "subscribe_msg_sent_event"}
# Subscribe-notice events: their wrapper element, our event name. The change event's
# wrapper is SubscribeMsgChangeEvent in practice, SubscribeMsgPopupEvent in one doc
# sample (developers' community, 2021): both are read.
NOTICE_EVENTS = {"subscribe_msg_popup_event": (t.NOTICE_POPUP, ("SubscribeMsgPopupEvent",)),
                 "subscribe_msg_change_event": (t.NOTICE_CHANGE, ("SubscribeMsgChangeEvent", "SubscribeMsgPopupEvent")),
                 "subscribe_msg_sent_event": (t.NOTICE_SENT, ("SubscribeMsgSentEvent",))}
NOTICE_ITEMS_MAX = 20  # a subscribe button carries a few template ids; more is not WeChat's


def to_message(raw) -> Message | None:
    """wechatpy message/event object → plain `Message` (the account id kept in extra), or
    None for a type the app does not handle (it is acknowledged with "success")."""
    data = raw._data
    openid = _str(data, "FromUserName")
    if not openid or len(openid) > OPENID_MAX:
        raise BadRequest(400, "missing or oversized FromUserName")
    account = _str(data, "ToUserName")
    if len(account) > ACCOUNT_MAX:  # it becomes the reply's FromUserName
        raise BadRequest(400, "oversized ToUserName")
    # A MsgId or CreateTime out of shape reads as absent (0), as a missing one always has.
    common = dict(openid=openid, msg_id=bounded_int(data.get("MsgId"), 0, MSG_ID_MAX) or 0,
                  create_time=bounded_int(data.get("CreateTime"), 0, TIMESTAMP_MAX) or 0,
                  extra={"to_user": account})
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
        extra["format"] = _str(data, "Format").lower()  # amr, or speex for HD voice (bot/speech.py)
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
    lat, lng = bounded_decimal(lat, -90, 90), bounded_decimal(lng, -180, 180)
    if lat is None or lng is None:
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
    if ev in NOTICE_EVENTS:
        name, wrappers = NOTICE_EVENTS[ev]
        common["extra"]["notices"] = _notice_items(data, wrappers)
        return Message(kind=t.EVENT, event=name, **common)
    if ev == "templatesendjobfinish":
        # The template message's id is "MsgID" (capital D): not a MsgId, so dedup by event.
        return Message(kind=t.EVENT, event=t.TEMPLATE_FINISH, key=_str(data, "MsgID"),
                       text=_str(data, "Status"), **common)
    return Message(kind=t.EVENT, event=ev, key=key, **common)  # click, view, unsubscribe


def _notice_items(data: dict, wrappers: tuple[str, ...]) -> list[dict]:
    """The <List> items of a subscribe-notice event as plain dicts (one item or many:
    xmltodict gives a dict or a list), each {template_id, status, scene, error_code}."""
    items = []
    for wrapper in wrappers:
        block = data.get(wrapper)
        found = block.get("List") if isinstance(block, dict) else None
        if found is not None:
            items = found if isinstance(found, list) else [found]
            break
    out = []
    for item in items[:NOTICE_ITEMS_MAX]:
        if not isinstance(item, dict):
            continue
        out.append({"template_id": _str(item, "TemplateId")[:128],
                    "status": _str(item, "SubscribeStatusString").lower()[:16],
                    "scene": _str(item, "PopupScene")[:4],
                    "error_code": bounded_int(item.get("ErrorCode"), 0, 10**6),
                    "error_status": _str(item, "ErrorStatus")[:64]})
    return out
