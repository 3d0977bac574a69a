"""A stand-in for WeChat's servers on the sending side: builds pushes exactly as WeChat does
(XML body, signed query, AES envelope in safe mode) and reads the replies back.

Used by `volbot chat`, the browser simulator and the tests, so all of them exercise the
real webhook over HTTP.
"""

from __future__ import annotations

import hashlib
import itertools
import random
import threading
import time
from dataclasses import dataclass, field

import xmltodict
from wechatpy.crypto import WeChatCrypto

from bot.protocol import cdata_safe

_msg_ids = itertools.count(int(time.time() * 1000) % 10**12 * 1000)
_lock = threading.Lock()


def next_msg_id() -> int:
    with _lock:
        return next(_msg_ids)


def sign(token: str, timestamp: str, nonce: str, *extra: str) -> str:
    return hashlib.sha1("".join(sorted([token, timestamp, nonce, *extra])).encode()).hexdigest()


def _cdata(value) -> str:
    return f"<![CDATA[{cdata_safe(str(value))}]]>"


def message_xml(fields: dict) -> str:
    """An inbound push as WeChat writes it (strings in CDATA, numbers bare)."""
    parts = []
    for k, v in fields.items():
        if isinstance(v, dict):
            parts.append(f"<{k}>{message_xml(v)[5:-6]}</{k}>")
        elif isinstance(v, list):  # repeated elements, e.g. the <List> items of a subscribe event
            parts.extend(f"<{k}>{message_xml(item)[5:-6]}</{k}>" for item in v)
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            parts.append(f"<{k}>{v}</{k}>")
        else:
            parts.append(f"<{k}>{_cdata(v)}</{k}>")
    return "<xml>" + "".join(parts) + "</xml>"


@dataclass
class Sent:
    """What one push produced: HTTP status, the raw body and the decoded reply."""

    status: int
    body: str
    msg_type: str = ""
    text: str = ""
    fields: dict = field(default_factory=dict)


@dataclass
class WeChatSender:
    token: str
    appid: str
    aes_key: str | None = None
    account: str = "gh_volbot_demo"
    clock: object = None  # anything with .timestamp(); default: real time

    @property
    def crypto(self):
        return WeChatCrypto(self.token, self.aes_key, self.appid) if self.aes_key else None

    def now(self) -> int:
        return int(self.clock.timestamp() if self.clock else time.time())

    # ---- building pushes ----------------------------------------------------------------

    def text(self, openid: str, content: str, msg_id: int | None = None) -> dict:
        return self._base(openid, "text", Content=content, MsgId=msg_id or next_msg_id())

    def voice(self, openid: str, recognition: str, msg_id: int | None = None) -> dict:
        return self._base(openid, "voice", MediaId="media_voice", Format="amr",
                          Recognition=recognition, MsgId=msg_id or next_msg_id())

    def location(self, openid: str, lat: float, lng: float, label: str = "", msg_id: int | None = None) -> dict:
        return self._base(openid, "location", Location_X=lat, Location_Y=lng, Scale=15,
                          Label=label, MsgId=msg_id or next_msg_id())

    def image(self, openid: str) -> dict:
        return self._base(openid, "image", PicUrl="http://127.0.0.1/p.jpg", MediaId="m1",
                          MsgId=next_msg_id())

    def event(self, openid: str, event: str, key: str | None = None, **extra) -> dict:
        fields = self._base(openid, "event", Event=event)
        if key is not None:
            fields["EventKey"] = key
        fields.update(extra)
        return fields

    def _base(self, openid: str, msg_type: str, **extra) -> dict:
        return {"ToUserName": self.account, "FromUserName": openid, "CreateTime": self.now(),
                "MsgType": msg_type, **extra}

    # ---- signing and sending --------------------------------------------------------------

    def request(self, fields: dict | str, encrypt: bool | None = None) -> tuple[dict, bytes]:
        """(query params, body bytes) for a push, signed, and encrypted in safe mode."""
        xml = fields if isinstance(fields, str) else message_xml(fields)
        timestamp = str(self.now())
        nonce = str(random.randint(10**8, 10**9))
        params = {"timestamp": timestamp, "nonce": nonce,
                  "signature": sign(self.token, timestamp, nonce)}
        if isinstance(fields, dict):
            params["openid"] = fields.get("FromUserName", "")
        encrypt = bool(self.aes_key) if encrypt is None else encrypt
        if encrypt:
            envelope = xmltodict.parse(self.crypto.encrypt_message(xml, nonce, timestamp))["xml"]
            params.update(encrypt_type="aes", msg_signature=envelope["MsgSignature"])
            body = (f"<xml><ToUserName>{_cdata(self.account)}</ToUserName>"
                    f"<Encrypt>{_cdata(envelope['Encrypt'])}</Encrypt></xml>")
            return params, body.encode("utf-8")
        return params, xml.encode("utf-8")

    def decode(self, status: int, body: str, params: dict) -> Sent:
        sent = Sent(status=status, body=body)
        if status != 200 or not body.startswith("<xml"):
            return sent
        xml = body
        if params.get("encrypt_type") == "aes":
            env = xmltodict.parse(body)["xml"]
            xml = self.crypto.decrypt_message(body, env["MsgSignature"], env["TimeStamp"], env["Nonce"])
        data = xmltodict.parse(xml)["xml"]
        sent.fields = data
        sent.msg_type = data.get("MsgType", "")
        if sent.msg_type == "text":
            sent.text = data.get("Content") or ""
        elif sent.msg_type == "news":
            item = data["Articles"]["item"]
            sent.text = f"{item.get('Title', '')}\n{item.get('Description', '')}\n{item.get('Url', '')}"
        return sent

    def post(self, http, url: str, fields: dict | str, encrypt: bool | None = None) -> Sent:
        """Send with any `requests`-like session: `http.post(url, params=, data=)`."""
        params, body = self.request(fields, encrypt)
        resp = http.post(url, params=params, data=body, headers={"Content-Type": "text/xml"}, timeout=10)
        return self.decode(resp.status_code, resp.text, params)
