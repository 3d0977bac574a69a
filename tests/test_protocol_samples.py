"""The official and peer vectors in tests/fixtures/wechat-samples, and every XML fixture there,
through `bot.protocol` and through the real app over HTTP (plain and safe mode)."""

from __future__ import annotations

import json
from unittest import mock

import pytest
import requests
import xmltodict
from wechatpy.crypto import WeChatCrypto
from wechatpy.crypto.base import BasePrpCrypto

from bot.protocol import BadRequest, Protocol
from bot.sender import WeChatSender, sign
from dialogue import types as t
from tests.protocol_support import find_samples, live, with_protocol

SAMPLES = find_samples()
MANIFEST = json.loads((SAMPLES / "fixtures" / "MANIFEST.json").read_text())
OA = json.loads((SAMPLES / "oa_official_docs_2024.json").read_text())
PY2014 = json.loads((SAMPLES / "oa_official_python_sample_2014.json").read_text())
WECHATPY = json.loads((SAMPLES / "wechatpy_tests_test_crypto.json").read_text())
WECOM = json.loads((SAMPLES / "wecom_official_2014.json").read_text())


def test_manifest_lists_every_fixture():
    files = sorted(p.relative_to(SAMPLES).as_posix() for p in (SAMPLES / "fixtures").rglob("*.xml"))
    assert len(MANIFEST) == 130
    assert sorted(entry["file"] for entry in MANIFEST) == files


# ---- URL verification and signatures -------------------------------------------------------

def test_get_url_verification_vector(svc):
    v = OA["url_verification_GET"]
    account = with_protocol(svc, wechat_token=OA["token"], timestamp_tolerance=0)
    with live(account) as url:
        query = {k: v[k] for k in ("signature", "timestamp", "nonce", "echostr")}
        resp = requests.get(url + "/wechat", params=query)
        assert resp.status_code == 200 and resp.text == v["expected_response_body"]
        resp = requests.get(url + "/wechat", params=dict(query, nonce=str(int(v["nonce"]) + 1)))
        assert resp.status_code == 403 and v["echostr"] not in resp.text


def test_signature_is_sha1_of_sorted_parts():
    v = OA["url_verification_GET"]
    assert sorted([OA["token"], v["timestamp"], v["nonce"]]) == v["sorted"]
    assert sign(OA["token"], v["timestamp"], v["nonce"]) == v["signature"]
    Protocol(OA["token"], "wx", None, timestamp_tolerance=0).verify(v)


def test_plain_post_vector_signature_accepted(svc):
    v = OA["plain_mode_POST"]
    body = v["body_json"]
    # OA pushes are XML; the doc's example is the JSON format of the same event. The plain
    # signature covers only token/timestamp/nonce, so the XML form carries the same query.
    xml = (f"<xml><ToUserName><![CDATA[{body['ToUserName']}]]></ToUserName>"
           f"<FromUserName><![CDATA[{body['FromUserName']}]]></FromUserName>"
           f"<CreateTime>{body['CreateTime']}</CreateTime><MsgType><![CDATA[event]]></MsgType>"
           f"<Event><![CDATA[{body['Event']}]]></Event></xml>")
    account = with_protocol(svc, wechat_token=OA["token"], timestamp_tolerance=0)
    with live(account) as url:
        query = {k: v[k] for k in ("signature", "timestamp", "nonce")}
        resp = requests.post(url + "/wechat", params=query, data=xml.encode())
        assert resp.status_code == 200 and resp.text == "success"  # debug_demo: not ours
        resp = requests.post(url + "/wechat", params=dict(query, signature="0" * 40), data=xml.encode())
        assert resp.status_code == 403


# ---- safe mode: decrypt ---------------------------------------------------------------------

def test_safe_mode_decrypt_vector():
    v = OA["safe_mode_POST"]
    protocol = Protocol(OA["token"], v["appid"], v["encoding_aes_key"], timestamp_tolerance=0)
    q = v["query"]
    assert sign(OA["token"], q["timestamp"], q["nonce"]) == q["signature"]
    plain = protocol.crypto.decrypt_message(v["body_json"], q["msg_signature"], q["timestamp"], q["nonce"])
    assert plain == v["decrypted_msg"]
    with pytest.raises(BadRequest) as bad:  # a wrong msg_signature is refused with 403
        protocol.read(dict(q, msg_signature="1" * 40),
                      f"<xml><Encrypt><![CDATA[{v['body_json']['Encrypt']}]]></Encrypt></xml>".encode())
    assert bad.value.status == 403


def test_safe_mode_vector_through_app_is_verified_then_refused_as_json(svc):
    """The doc's example decrypts to JSON (mini-program format): the app verifies the
    msg_signature and decrypts it, then answers 400 because an OA push must be XML."""
    v = OA["safe_mode_POST"]
    account = with_protocol(svc, wechat_token=OA["token"], wechat_appid=v["appid"],
                            wechat_aes_key=v["encoding_aes_key"], timestamp_tolerance=0)
    body = (f"<xml><ToUserName><![CDATA[{v['body_json']['ToUserName']}]]></ToUserName>"
            f"<Encrypt><![CDATA[{v['body_json']['Encrypt']}]]></Encrypt></xml>")
    with live(account) as url:
        resp = requests.post(url + "/wechat", params=v["query"], data=body.encode())
        assert (resp.status_code, resp.text) == (400, "malformed XML")
        bad = dict(v["query"], msg_signature="046e02f8204d34f8ba5fa3b1db94908f3df2e9b4")
        assert requests.post(url + "/wechat", params=bad, data=body.encode()).status_code == 403


@pytest.mark.parametrize("vector,token,key,appid,msg_signature,timestamp,nonce,openid,content", [
    (PY2014["post_body_xml"], PY2014["token"], PY2014["encoding_aes_key"], PY2014["appid"],
     PY2014["msg_signature"], PY2014["timestamp"], PY2014["nonce"], "oyORnuP8q7ou2gfYjqLzSIWZf0rs", "abcdteT"),
    (WECHATPY["decrypt"]["post_body_xml"], WECHATPY["token"], WECHATPY["encoding_aes_key"],
     WECHATPY["receive_id"], WECHATPY["decrypt"]["msg_signature"], WECHATPY["decrypt"]["timestamp"],
     WECHATPY["decrypt"]["nonce"], "messense", "test"),
    (WECOM["decrypt"]["post_body_xml"], WECOM["token"], WECOM["encoding_aes_key"], WECOM["receive_id"],
     WECOM["decrypt"]["msg_signature"], WECOM["decrypt"]["timestamp"], WECOM["decrypt"]["nonce"],
     "mycreate", "hello"),
], ids=["official-python-2014-compat", "wechatpy-tests", "wecom-2014"])
def test_encrypted_xml_vectors_through_app(svc, vector, token, key, appid, msg_signature,
                                           timestamp, nonce, openid, content):
    protocol = Protocol(token, appid, key, timestamp_tolerance=0)
    query = {"signature": sign(token, timestamp, nonce), "timestamp": timestamp, "nonce": nonce,
             "encrypt_type": "aes", "msg_signature": msg_signature}
    message, encrypted = protocol.read(query, vector.encode())
    assert encrypted and (message.openid, message.kind, message.text) == (openid, t.TEXT, content)
    account = with_protocol(svc, wechat_token=token, wechat_appid=appid, wechat_aes_key=key,
                            timestamp_tolerance=0)
    sender = WeChatSender(token, appid, key)
    with live(account) as url:
        resp = requests.post(url + "/wechat", params=query, data=vector.encode())
        assert resp.status_code == 200
        sent = sender.decode(200, resp.text, query)  # checks the reply's MsgSignature too
        assert sent.msg_type == "text" and sent.fields["ToUserName"] == openid and sent.text
        # A compat-mode body is answered encrypted because the push was (encrypt_type=aes).
        assert "<Encrypt>" in resp.text and "<Content>" not in resp.text


# ---- safe mode: the deterministic encrypted replies, byte for byte --------------------------

def _fixed_random(value: str):
    return mock.patch.object(BasePrpCrypto, "get_random_string", lambda self: value)


def test_official_reply_encryption_vector():
    v = OA["safe_mode_reply_encryption"]
    protocol = Protocol(OA["token"], v["appid"], OA["safe_mode_POST"]["encoding_aes_key"])
    with _fixed_random(v["random16"]):
        envelope = protocol.crypto.encrypt_message(v["msg"], v["Nonce"], int(v["TimeStamp"]))
    assert envelope == v["xml_envelope"]
    fields = xmltodict.parse(envelope)["xml"]
    assert (fields["Encrypt"], fields["MsgSignature"]) == (v["Encrypt"], v["MsgSignature"])


def test_wechatpy_fixed_random_encryption_vector():
    v = WECHATPY["encrypt_fixed_random"]
    protocol = Protocol(WECHATPY["token"], WECHATPY["receive_id"], WECHATPY["encoding_aes_key"])
    with _fixed_random(v["random16"]):
        assert protocol.crypto.encrypt_message(v["plaintext"], v["nonce"], int(v["timestamp"])) == v["expected_xml"]


def test_rendered_reply_is_the_vector_algorithm():
    """Our own reply XML, encrypted with a fixed random, equals wechatpy's encryption of the
    same XML and decrypts back to it."""
    v = OA["safe_mode_reply_encryption"]
    key = OA["safe_mode_POST"]["encoding_aes_key"]
    protocol = Protocol(OA["token"], v["appid"], key)
    message = t.Message(openid="o9AgO5Kd5ggOC-bXrbNODIiE3bGY")
    with _fixed_random(v["random16"]):
        envelope = protocol.render(t.Reply("good luck"), message, "gh_97417a04a28d", True,
                                   nonce=v["Nonce"], timestamp=int(v["TimeStamp"]))
        plain = protocol.render(t.Reply("good luck"), message, "gh_97417a04a28d", False,
                                nonce=v["Nonce"], timestamp=int(v["TimeStamp"]))
        expected = WeChatCrypto(OA["token"], key, v["appid"]).encrypt_message(plain, v["Nonce"], int(v["TimeStamp"]))
    assert envelope == expected
    fields = xmltodict.parse(envelope)["xml"]
    assert protocol.crypto.decrypt_message(envelope, fields["MsgSignature"], fields["TimeStamp"],
                                           fields["Nonce"]) == plain


# ---- every XML fixture ------------------------------------------------------------------------

FIXTURES = [entry["file"] for entry in MANIFEST]


@pytest.mark.parametrize("name", FIXTURES, ids=[f.split("/", 1)[1] for f in FIXTURES])
def test_fixture_parses(name):
    entry = next(e for e in MANIFEST if e["file"] == name)
    message = Protocol.parse((SAMPLES / name).read_text(encoding="utf-8"))
    raw_type = (entry["raw_MsgType"] or "").lower()
    if message is None:
        return  # a type we do not handle: answered "success"
    assert message.openid
    if raw_type in ("text", "voice", "image", "video", "shortvideo", "location", "link", "file"):
        assert message.kind == {"shortvideo": t.VIDEO}.get(raw_type, raw_type)
        assert message.msg_id > 0
    if message.kind == t.EVENT:
        assert message.event in {t.SUBSCRIBE, t.UNSUBSCRIBE, t.SCAN, t.LOCATION_REPORT, t.CLICK,
                                 t.VIEW, t.SCANCODE, t.LOCATION_SELECT, t.TEMPLATE_FINISH,
                                 t.NOTICE_POPUP, t.NOTICE_CHANGE, t.NOTICE_SENT}
    if message.event in (t.NOTICE_POPUP, t.NOTICE_CHANGE, t.NOTICE_SENT):
        items = message.extra["notices"]  # the <List> items of a subscribe-notice event
        assert items and all(i["template_id"] for i in items)
        assert all(i["status"] in ("accept", "reject") for i in items) or message.event == t.NOTICE_SENT


@pytest.mark.parametrize("mode", ["plain", "safe"])
@pytest.mark.parametrize("name", FIXTURES, ids=[f.split("/", 1)[1] for f in FIXTURES])
def test_fixture_through_app(wechat_plain, name, mode):
    xml = (SAMPLES / name).read_text(encoding="utf-8")
    sent = wechat_plain.send(xml, encrypt=(mode == "safe"))
    assert sent.status == 200, (sent.status, sent.body)
    if sent.body != "success":
        # decode() parsed (and in safe mode verified and decrypted) the reply XML
        assert sent.msg_type in ("text", "news") and sent.text, sent.body
        assert sent.fields["ToUserName"] == Protocol.parse(xml).openid
        assert ("<Encrypt>" in sent.body) == (mode == "safe")
