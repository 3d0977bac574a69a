"""bot.protocol: every inbound type to the plain Message, and replies that are always
well-formed XML within WeChat's limits."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
import xmltodict
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.protocol import TEXT_LIMIT, BadRequest, Protocol, cdata_safe, fit_text
from bot.sender import message_xml
from dialogue import types as t
from dialogue.types import Article, Message, Reply

BASE = {"ToUserName": "gh_acc", "FromUserName": "o_user_1", "CreateTime": 1700000000}


def parse(msg_type: str, **fields) -> Message | None:
    return Protocol.parse(message_xml({**BASE, "MsgType": msg_type, **fields}))


def event(name: str, **fields) -> Message | None:
    return parse("event", Event=name, **fields)


def test_text():
    m = parse("text", Content="你好", MsgId=42)
    assert (m.kind, m.text, m.msg_id, m.openid, m.create_time) == (t.TEXT, "你好", 42, "o_user_1", 1700000000)
    assert m.extra["to_user"] == "gh_acc" and m.dedup_key == "m:42"


def test_voice_uses_recognition_as_text():
    m = parse("voice", MediaId="mv", Format="amr", Recognition=" 我要预约 ", MsgId=1)
    assert (m.kind, m.text, m.extra["media_id"]) == (t.VOICE, "我要预约", "mv")
    assert parse("voice", MediaId="mv", Format="amr", MsgId=2).text == ""  # recognition off


@pytest.mark.parametrize("wire,kind", [("image", t.IMAGE), ("video", t.VIDEO), ("shortvideo", t.VIDEO)])
def test_media(wire, kind):
    m = parse(wire, MediaId="m1", PicUrl="http://x/p.jpg", ThumbMediaId="th", MsgId=3)
    assert (m.kind, m.extra["media_id"], m.extra["type"]) == (kind, "m1", wire)


def test_location():
    m = parse("location", Location_X=36.71, Location_Y=119.12, Scale=15, Label="奎文区", MsgId=4)
    assert (m.kind, m.location, m.text) == (t.LOCATION, t.Location(36.71, 119.12, "奎文区"), "奎文区")
    assert parse("location", Location_X="abc", Location_Y=1, MsgId=5).location is None
    assert parse("location", Location_X=200, Location_Y=1, MsgId=6).location is None


def test_link_and_file():
    m = parse("link", Title="公告", Description="d", Url="http://x", MsgId=7)
    assert (m.kind, m.text, m.extra["url"]) == (t.LINK, "公告", "http://x")
    f = parse("file", Title="表格.xlsx", Description="d", FileKey="k", FileMd5="m", FileTotalLen=10, MsgId=8)
    assert (f.kind, f.text, f.extra["file_key"]) == (t.FILE, "表格.xlsx", "k")


def test_subscribe_plain_and_with_scene():
    assert (event("subscribe").event, event("subscribe").key) == (t.SUBSCRIBE, "")
    m = event("subscribe", EventKey="qrscene_cm:KW001", Ticket="tk")
    assert (m.kind, m.event, m.key) == (t.EVENT, t.SUBSCRIBE, "cm:KW001")
    # After WeChat Pay a subscribe may carry a non-QR EventKey: not a scene.
    assert event("subscribe", EventKey="last_trade_no_4200").key == ""


def test_other_events():
    assert event("unsubscribe").event == t.UNSUBSCRIBE
    assert (event("SCAN", EventKey="act:12", Ticket="tk").event, event("SCAN", EventKey="act:12").key) == (t.SCAN, "act:12")
    loc = event("LOCATION", Latitude="36.7", Longitude="119.1", Precision="30")
    assert (loc.event, loc.location) == (t.LOCATION_REPORT, t.Location(36.7, 119.1))
    assert (event("CLICK", EventKey="ORDER").event, event("CLICK", EventKey="ORDER").key) == (t.CLICK, "ORDER")
    assert (event("VIEW", EventKey="http://x/y").event, event("VIEW", EventKey="http://x/y").key) == (t.VIEW, "http://x/y")
    for name in ("scancode_push", "scancode_waitmsg"):
        m = event(name, EventKey="SCAN1", ScanCodeInfo={"ScanType": "qrcode", "ScanResult": "act:9"})
        assert (m.event, m.key, m.text, m.extra["scan_type"]) == (t.SCANCODE, "SCAN1", "act:9", "qrcode")
    sel = event("location_select", EventKey="LOC", SendLocationInfo={
        "Location_X": "36.7", "Location_Y": "119.1", "Scale": "15", "Label": "东风东街", "Poiname": ""})
    assert (sel.event, sel.location, sel.text) == (t.LOCATION_SELECT, t.Location(36.7, 119.1, "东风东街"), "东风东街")
    done = event("TEMPLATESENDJOBFINISH", MsgID=200163836, Status="failed:user block")
    assert (done.event, done.key, done.text, done.msg_id) == (t.TEMPLATE_FINISH, "200163836", "failed:user block", 0)


def test_event_dedup_key_is_sender_time_event_key():
    m = event("CLICK", EventKey="ORDER")
    assert m.dedup_key == "e:o_user_1:1700000000:click:ORDER"


@pytest.mark.parametrize("xml", [
    message_xml({**BASE, "MsgType": "miniprogrampage", "MsgId": 1}),
    message_xml({**BASE, "MsgType": "event", "Event": "pic_sysphoto", "EventKey": "P"}),
    message_xml({**BASE, "MsgType": "event", "Event": "MASSSENDJOBFINISH"}),
    message_xml({**BASE, "MsgType": "event"}),  # no Event at all
    message_xml({**BASE, "MsgType": "whatever"}),
])
def test_unknown_types_are_none(xml):
    assert Protocol.parse(xml) is None


@pytest.mark.parametrize("xml", [
    "not xml", "<xml><MsgType>text</MsgType>", "<root><MsgType>text</MsgType></root>",
    "<xml>text</xml>", "<xml><ToUserName>a</ToUserName></xml>",  # no MsgType
    message_xml({"ToUserName": "gh", "MsgType": "text", "Content": "x"}),  # no FromUserName
    message_xml({**BASE, "FromUserName": "o" * 65, "MsgType": "text", "Content": "x"}),
])
def test_malformed_is_bad_request(xml):
    with pytest.raises(BadRequest) as e:
        Protocol.parse(xml)
    assert e.value.status == 400


# ---- replies -----------------------------------------------------------------------------

USER = Message(openid="o_user_1", extra={"to_user": "gh_acc"})
PROTOCOL = Protocol("tok", "wx49f0ab532d5d035a", "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR")


def render(reply: Reply, encrypted: bool = False) -> str:
    return PROTOCOL.render(reply, USER, "gh_acc", encrypted, nonce="123", timestamp=1700000000)


def reply_fields(body: str) -> dict:
    if "<Encrypt>" in body:
        env = xmltodict.parse(body)["xml"]
        body = PROTOCOL.crypto.decrypt_message(body, env["MsgSignature"], env["TimeStamp"], env["Nonce"])
    root = ET.fromstring(body)  # well-formed, or this raises
    fields = xmltodict.parse(body)["xml"]
    if root.find("Content") is not None:
        fields["Content"] = root.findtext("Content")  # exact, whitespace kept
    return fields


def as_parsed(text: str) -> str:
    """What an XML parser gives back for `text` (XML normalises line ends)."""
    return text.replace("\r\n", "\n").replace("\r", "\n")


def test_text_reply_swaps_ids():
    f = reply_fields(render(Reply("你好")))
    assert (f["MsgType"], f["Content"], f["ToUserName"], f["FromUserName"], f["CreateTime"]) == (
        "text", "你好", "o_user_1", "gh_acc", "1700000000")


def test_empty_reply_is_success_even_in_safe_mode():
    assert render(Reply(), encrypted=False) == "success" == render(Reply(), encrypted=True)


@pytest.mark.parametrize("encrypted", [False, True])
def test_single_article_news(encrypted):
    art = Article("志愿巴士]]>周六", "东风东街 9:00", "http://x/a?b=1&c=2", "http://x/p.jpg")
    f = reply_fields(render(Reply(article=art), encrypted))
    assert f["MsgType"] == "news" and f["ArticleCount"] == "1"
    item = f["Articles"]["item"]
    assert (item["Title"], item["Description"], item["Url"], item["PicUrl"]) == (
        art.title, art.description, art.url, art.pic_url)


def test_text_cut_at_2048_bytes_on_a_character_boundary():
    long = "志" * 700  # 2100 bytes
    cut = fit_text(long)
    assert len(cut.encode()) <= TEXT_LIMIT and cut.endswith("…") and cut.startswith("志" * 600)
    assert fit_text("a" * 2048) == "a" * 2048
    assert len(fit_text("😀" * 600).encode()) <= TEXT_LIMIT
    f = reply_fields(render(Reply(long)))
    assert len(f["Content"].encode()) <= TEXT_LIMIT


def test_cdata_breakers_and_control_chars():
    nasty = "a]]>b<![CDATA[c]]]]>\x00\x01\x0b\x1f</xml>&amp;\ud800\n\t"
    f = reply_fields(render(Reply(nasty)))
    assert f["Content"] == "a]]>b<![CDATA[c]]]]></xml>&amp;\n\t"
    assert cdata_safe("]]>") == "]]]]><![CDATA[>"


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_any_text_round_trips_to_well_formed_xml(text):
    expected = fit_text(text)
    body = render(Reply(text))
    if not expected:
        assert body == "success"  # nothing printable left: an empty reply
        return
    f = reply_fields(body)
    assert f["Content"] == as_parsed(expected)


@settings(max_examples=100, deadline=None)
@given(st.text(min_size=1))
def test_any_text_round_trips_encrypted(text):
    body = render(Reply(text), encrypted=True)
    if body != "success":
        assert reply_fields(body)["Content"] == as_parsed(fit_text(text))
