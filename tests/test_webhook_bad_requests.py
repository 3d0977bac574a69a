"""Bad requests get a 4xx (never a 500) and leave nothing behind: no follower row, no
dedup or lock key in Redis."""

from __future__ import annotations

import base64
import hashlib

import pytest
import requests
import xmltodict

from bot.sender import WeChatSender, message_xml, sign
from store.models import Follower
from tests.conftest import TEST_AES_KEY, TEST_APPID, TEST_TOKEN
from tests.protocol_support import count_rows, live, with_protocol

OPENID = "o_bad_request_user"


class Shifted:
    """A clock `seconds` away from the service clock."""

    def __init__(self, clock, seconds: float):
        self.clock, self.seconds = clock, seconds

    def timestamp(self) -> float:
        return self.clock.timestamp() + self.seconds


def push(svc, encrypt: bool, **sender_options):
    sender = WeChatSender(TEST_TOKEN, TEST_APPID, TEST_AES_KEY, clock=svc.clock)
    for k, v in sender_options.items():
        setattr(sender, k, v)
    return sender.request(sender.event(OPENID, "subscribe"), encrypt=encrypt)


def post(base_url, params, body, **kw):
    return requests.post(base_url + "/wechat", params=params, data=body,
                         headers={"Content-Type": "text/xml"}, timeout=10, **kw)


def assert_nothing_stored(svc):
    assert count_rows(svc, Follower) == 0
    assert svc.redis.keys("volbot:*") == []


def assert_refused(svc, resp, status):
    assert resp.status_code == status, (resp.status_code, resp.text[:200])
    assert_nothing_stored(svc)


def test_a_good_push_is_stored(base_url, svc):
    """The control: the same push, untampered, answers and stores the follower."""
    params, body = push(svc, encrypt=True)
    resp = post(base_url, params, body)
    assert resp.status_code == 200 and "<Encrypt>" in resp.text
    assert count_rows(svc, Follower) == 1 and svc.redis.keys("volbot:dedup:*")


@pytest.mark.parametrize("encrypt", [False, True], ids=["plain", "safe"])
def test_missing_or_wrong_signature(base_url, svc, encrypt):
    params, body = push(svc, encrypt)
    assert_refused(svc, post(base_url, {}, body), 403)
    for name in ("signature", "timestamp", "nonce"):
        assert_refused(svc, post(base_url, {k: v for k, v in params.items() if k != name}, body), 403)
    assert_refused(svc, post(base_url, dict(params, signature="0" * 40), body), 403)
    assert_refused(svc, post(base_url, dict(params, nonce=params["nonce"] + "1"), body), 403)


def test_get_verification(base_url, svc):
    params, _ = push(svc, encrypt=False)
    ok = requests.get(base_url + "/wechat", params=dict(params, echostr="12345"))
    assert (ok.status_code, ok.text) == (200, "12345")
    assert requests.get(base_url + "/wechat", params={"echostr": "1"}).status_code == 403
    bad = requests.get(base_url + "/wechat", params=dict(params, signature="1" * 40, echostr="1"))
    assert bad.status_code == 403 and bad.text != "1"
    stale = push(svc, False, clock=Shifted(svc.clock, -301))[0]
    assert requests.get(base_url + "/wechat", params=dict(stale, echostr="1")).status_code == 403


@pytest.mark.parametrize("encrypt", [False, True], ids=["plain", "safe"])
def test_stale_timestamp(base_url, svc, encrypt):
    for seconds in (-301, -3600, +301):
        params, body = push(svc, encrypt, clock=Shifted(svc.clock, seconds))
        assert_refused(svc, post(base_url, params, body), 403)
    params, body = push(svc, encrypt, clock=Shifted(svc.clock, -290))  # inside 5 minutes
    assert post(base_url, params, body).status_code == 200


def test_timestamp_window_is_configurable(svc):
    params, body = push(svc, False, clock=Shifted(svc.clock, -600))
    with live(with_protocol(svc, timestamp_tolerance=900)) as url:
        assert post(url, params, body).status_code == 200
    with live(with_protocol(svc, timestamp_tolerance=60)) as url:
        params, body = push(svc, False, clock=Shifted(svc.clock, -61))
        assert post(url, params, body).status_code == 403


def _signed(svc, xml: bytes | str, encrypt: bool, appid: str = TEST_APPID):
    sender = WeChatSender(TEST_TOKEN, appid, TEST_AES_KEY, clock=svc.clock)
    if isinstance(xml, bytes):
        params, _ = sender.request("<xml/>", encrypt=False)
        return params, xml
    return sender.request(xml, encrypt=encrypt)


MALFORMED = [
    "<xml><ToUserName>gh</ToUserName><FromUserName>o_bad_request_user",  # cut short
    "this is not xml",
    "<xml><ToUserName>gh</ToUserName><FromUserName>o_bad_request_user</FromUserName></xml>",  # no MsgType
    "<xml><FromUserName>o_bad_request_user</FromUserName><MsgType><a>1</a></MsgType></xml>",
    "<other><FromUserName>o_bad_request_user</FromUserName><MsgType>text</MsgType></other>",
    "<xml><MsgType>text</MsgType><Content>x</Content></xml>",  # no FromUserName
    "<xml>just text</xml>",
]
XXE = [
    '<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
    "<xml><FromUserName>o_bad_request_user</FromUserName><MsgType>text</MsgType><Content>&x;</Content></xml>",
    '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;">'
    '<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;">]>'
    "<xml><FromUserName>o_bad_request_user</FromUserName><MsgType>text</MsgType><Content>&lol3;</Content></xml>",
    "<!doctype xml><xml><FromUserName>o_bad_request_user</FromUserName><MsgType>text</MsgType></xml>",
]


@pytest.mark.parametrize("encrypt", [False, True], ids=["plain", "safe"])
@pytest.mark.parametrize("xml", MALFORMED + XXE)
def test_malformed_and_entity_xml(base_url, svc, encrypt, xml):
    params, body = _signed(svc, xml, encrypt)
    assert_refused(svc, post(base_url, params, body), 400)


def test_doctype_around_the_encrypted_envelope(base_url, svc):
    params, body = push(svc, encrypt=True)
    evil = b'<!DOCTYPE x [<!ENTITY a "b">]>' + body
    assert_refused(svc, post(base_url, params, evil), 400)


def test_non_utf8_body(base_url, svc):
    xml = message_xml({"ToUserName": "gh", "FromUserName": OPENID, "CreateTime": 1,
                       "MsgType": "text", "Content": "你好", "MsgId": 1})
    params, body = _signed(svc, xml.encode("gbk"), encrypt=False)
    assert_refused(svc, post(base_url, params, body), 400)
    assert_refused(svc, post(base_url, params, b"<xml>\xff\xfe\x80</xml>"), 400)


def test_empty_body(base_url, svc):
    params, _ = push(svc, encrypt=False)
    assert_refused(svc, post(base_url, params, b""), 400)
    assert_refused(svc, post(base_url, params, b"  \n"), 400)
    params, _ = push(svc, encrypt=True)
    assert_refused(svc, post(base_url, params, b""), 400)


def test_body_over_64_kib(base_url, svc):
    params, _ = push(svc, encrypt=False)
    xml = message_xml({"ToUserName": "gh", "FromUserName": OPENID, "CreateTime": 1,
                       "MsgType": "text", "Content": "x" * (64 * 1024), "MsgId": 2}).encode()
    assert_refused(svc, post(base_url, params, xml), 413)

    def chunked():  # no Content-Length: werkzeug's get_data() would cut it silently
        for i in range(0, len(xml), 4096):
            yield xml[i:i + 4096]

    assert_refused(svc, post(base_url, params, chunked()), 413)


def test_wrong_appid_inside_ciphertext(base_url, svc):
    params, body = push(svc, encrypt=True, appid="wx0000000000000000")
    resp = post(base_url, params, body)
    assert_refused(svc, resp, 403)
    assert "appid" in resp.text


def _envelope(body: bytes) -> str:
    return xmltodict.parse(body)["xml"]["Encrypt"]


def _with_encrypt(params, encrypt: str):
    """An envelope carrying `encrypt`, with a correct msg_signature over it."""
    msg_signature = hashlib.sha1("".join(sorted([TEST_TOKEN, params["timestamp"], params["nonce"], encrypt]))
                                 .encode()).hexdigest()
    body = f"<xml><ToUserName><![CDATA[gh]]></ToUserName><Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>"
    return dict(params, msg_signature=msg_signature), body.encode()


def test_tampered_ciphertext(base_url, svc):
    params, body = push(svc, encrypt=True)
    encrypt = _envelope(body)
    raw = bytearray(base64.b64decode(encrypt))
    # Tampered but correctly signed: refused by decryption (bad padding, length or appid).
    for position in (len(raw) - 1, 20, 0):
        flipped = bytearray(raw)
        flipped[position] ^= 0x5A
        p, b = _with_encrypt(params, base64.b64encode(bytes(flipped)).decode())
        assert post(base_url, p, b).status_code in (400, 403)
        assert_nothing_stored(svc)
    for garbage in ("not base64 !!", base64.b64encode(b"short").decode(), "", "QUJD"):
        p, b = _with_encrypt(params, garbage)
        assert_refused(svc, post(base_url, p, b), 400)
    # Tampered without re-signing: the msg_signature no longer matches.
    tampered = body.replace(encrypt.encode(), encrypt[:-8].encode() + b"AAAAAAA=")
    assert_refused(svc, post(base_url, params, tampered), 403)


def test_bad_or_missing_msg_signature(base_url, svc):
    params, body = push(svc, encrypt=True)
    assert_refused(svc, post(base_url, dict(params, msg_signature="0" * 40), body), 403)
    assert_refused(svc, post(base_url, {k: v for k, v in params.items() if k != "msg_signature"}, body), 403)


def test_safe_mode_push_without_aes_key(svc):
    params, body = push(svc, encrypt=True)
    with live(with_protocol(svc, wechat_aes_key=None)) as url:
        assert_refused(svc, post(url, params, body), 400)


def test_encrypted_envelope_without_encrypt_type_is_not_a_message(base_url, svc):
    params, body = push(svc, encrypt=True)
    plain_params = {k: v for k, v in params.items() if k not in ("encrypt_type", "msg_signature")}
    # Safe-mode body posted as plain: no MsgType/FromUserName in the clear.
    assert_refused(svc, post(base_url, plain_params, body), 400)


def test_signed_query_reused_with_another_body_is_accepted_only_as_signed(base_url, svc):
    """Plain mode signs only the query (WeChat's design); safe mode binds the body."""
    params, body = push(svc, encrypt=True)
    _, other = push(svc, encrypt=True)
    assert_refused(svc, post(base_url, params, other), 403)


def test_sign_helper_matches_wechatpy():
    from wechatpy.utils import check_signature

    check_signature("t", sign("t", "1", "2"), "1", "2")


@pytest.mark.parametrize("encrypt", [False, True], ids=["plain", "safe"])
def test_query_values_out_of_wechat_shape_are_refused(base_url, svc, encrypt):
    """Each parameter is checked against the shape WeChat gives it, signed or not."""
    params, body = push(svc, encrypt)
    assert_refused(svc, post(base_url, dict(params, encrypt_type="des"), body), 400)
    assert_refused(svc, post(base_url, dict(params, openid="o" * 65), body), 400)
    assert_refused(svc, post(base_url, dict(params, openid="o_<script>"), body), 400)
    assert_refused(svc, post(base_url, dict(params, signature=params["signature"].upper()), body), 403)
    if encrypt:
        assert_refused(svc, post(base_url, dict(params, msg_signature="x" * 40), body), 403)
    # A timestamp or nonce out of shape is refused even when the signature covers it.
    for timestamp, nonce in (("0" + params["timestamp"], params["nonce"]), (params["timestamp"], "1]]>2"),
                             ("1" * 13, params["nonce"]), (params["timestamp"], "9" * 65)):
        signed = dict(params, timestamp=timestamp, nonce=nonce, signature=sign(TEST_TOKEN, timestamp, nonce))
        assert_refused(svc, post(base_url, signed, body), 403)


def test_an_echostr_out_of_shape_is_not_echoed(base_url, svc):
    params, _ = push(svc, encrypt=False)
    for echostr in ("<script>alert(1)</script>", "1" * 513, "a b"):
        resp = requests.get(base_url + "/wechat", params=dict(params, echostr=echostr))
        assert resp.status_code == 400 and echostr not in resp.text
    base64_echostr = "P9nAzCzyDtyTWESHep1vC5X9xho/qYX3Zpb4yKa9SKld1DsH3Iyt3tP3zNdtp+4RPcs8TgAE7OaBO+FZXvnaqQ=="
    assert requests.get(base_url + "/wechat", params=dict(params, echostr=base64_echostr)).text == base64_echostr
