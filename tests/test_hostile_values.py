"""Hostile values in correctly signed requests (issue 28.2).

A push can carry a valid signature (and, in safe mode, a valid ciphertext) and still hold
absurd values: a 400-digit timestamp, a QR scene with thousands of digits, a coordinate of
1e400, control characters, nested elements where text belongs. Whatever the values, the
webhook answers 200 with a valid reply or "success", or a 4xx: never a 5xx, never 系统繁忙,
and no error is logged. Every request here goes over HTTP to the live app.
"""

from __future__ import annotations

import copy
import itertools
import logging
import random

import pytest
import requests
import xmltodict
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from wechatpy.crypto import WeChatCrypto

from bot.protocol import BadRequest, Protocol
from bot.sender import WeChatSender, next_msg_id, sign
from dialogue.flows import Invalid
from dialogue.types import Message
from handlers import registry
from handlers.dispatch import read_minutes
from handlers.review import read_decision
from store.bounded import bounded_decimal, record_id
from tests import seeds
from tests.conftest import TEST_AES_KEY, TEST_APPID, TEST_TOKEN

BUSY_TEXT = "系统繁忙"
ACCOUNT = "gh_volbot_test"
MAX_EXAMPLES = 40

# ---- building pushes with any values --------------------------------------------------


class Marker:
    """A field value that is not text (shown by name in a falsifying example)."""

    def __init__(self, name: str):
        self.name = name

    def __repr__(self):
        return self.name


ABSENT = Marker("ABSENT")  # the field is left out
NESTED = Marker("NESTED")  # an element where WeChat writes text: <Content><a>1</a></Content>
REPEATED = Marker("REPEATED")  # the element twice: <Content>1</Content><Content>act:2</Content>
FRESH = Marker("FRESH")  # a new MsgId or CreateTime for each push (see `fresh`)
_ticks = itertools.count(1)


def _cdata(value: str) -> str:
    # As WeChat writes text: one CDATA section, "]]>" split across two. Nothing is dropped:
    # characters XML forbids stay in, and the app must refuse that XML with a 4xx.
    return "<![CDATA[" + value.replace("]]>", "]]]]><![CDATA[>") + "]]>"


def to_xml(fields: dict, root: str = "xml") -> str:
    parts = []
    for name, value in fields.items():
        if value is ABSENT:
            continue
        if value is NESTED:
            parts.append(f"<{name}><a>1</a><b/></{name}>")
        elif value is REPEATED:
            parts.append(f"<{name}>1</{name}><{name}>act:2</{name}>")
        elif isinstance(value, dict):
            parts.append(to_xml(value, name))
        else:
            parts.append(f"<{name}>{_cdata(str(value))}</{name}>")
    return f"<{root}>" + "".join(parts) + f"</{root}>"


def fresh(fields: dict) -> dict:
    """FRESH MsgIds and CreateTimes filled in with new values: a push repeating the last
    one's would be answered from the dedup cache, and its values never reach a handler."""
    def fill(name, value):
        if isinstance(value, dict):
            return fresh(value)
        if value is FRESH:
            return str(next_msg_id()) if name == "MsgId" else str(1_700_000_000 + next(_ticks))
        return value

    return {name: fill(name, value) for name, value in fields.items()}


def signed(svc, xml: str, encrypt: bool, timestamp: str | None = None, nonce: str | None = None):
    """(query, body) for `xml`: the signature (and in safe mode the msg_signature over the
    ciphertext) computed over exactly the given timestamp and nonce, whatever they are."""
    timestamp = str(int(svc.clock.timestamp())) if timestamp is None else timestamp
    nonce = str(random.randint(10**8, 10**9)) if nonce is None else nonce
    params = {"timestamp": timestamp, "nonce": nonce, "signature": sign(TEST_TOKEN, timestamp, nonce)}
    if not encrypt:
        return params, xml.encode("utf-8", "surrogatepass")
    crypto = WeChatCrypto(TEST_TOKEN, TEST_AES_KEY, TEST_APPID)
    encrypted = xmltodict.parse(crypto.encrypt_message(xml, "1", "1"))["xml"]["Encrypt"]
    params.update(encrypt_type="aes", msg_signature=sign(TEST_TOKEN, timestamp, nonce, encrypted))
    body = f"<xml><ToUserName>{_cdata(ACCOUNT)}</ToUserName><Encrypt>{_cdata(encrypted)}</Encrypt></xml>"
    return params, body.encode("utf-8")


def post(base_url, params, body):
    return requests.post(base_url + "/wechat", params=params, data=body,
                         headers={"Content-Type": "text/xml"}, timeout=15)


def assert_answered(resp, params, errors):
    """200 with "success" or a valid (decryptable, text or news) reply without 系统繁忙, or
    a 4xx; never a 5xx; and nothing logged at ERROR while answering."""
    assert resp.status_code < 500, (resp.status_code, resp.text[:300])
    assert BUSY_TEXT not in resp.text
    assert not errors, [r.getMessage() for r in errors]
    if resp.status_code != 200 or resp.text == "success":
        return
    sender = WeChatSender(TEST_TOKEN, TEST_APPID, TEST_AES_KEY)
    sent = sender.decode(resp.status_code, resp.text, params)  # decrypting checks the signature
    assert sent.msg_type in ("text", "news"), resp.text[:300]
    assert sent.text and BUSY_TEXT not in sent.text


class ErrorLog(logging.Handler):
    """ERROR records from the app (a turn that failed, a reply not rendered, Flask's own
    log of an exception that became a 500). Not the test server's: werkzeug logs a 414 for
    a query over its URL limit at ERROR, and that 4xx is an answer like any other."""

    def __init__(self):
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record):
        if record.name != "werkzeug":
            self.records.append(record)


@pytest.fixture
def errors():
    handler = ErrorLog()
    root = logging.getLogger()
    root.addHandler(handler)
    yield handler.records
    root.removeHandler(handler)


# ---- the two cases the outside drill found (regressions) --------------------------------

HUGE = "1" * 400


def test_a_400_digit_timestamp_is_refused_on_get(base_url, svc, errors):
    params, _ = signed(svc, "<xml/>", False, timestamp=HUGE)
    resp = requests.get(base_url + "/wechat", params=dict(params, echostr="12345"), timeout=15)
    assert 400 <= resp.status_code < 500 and resp.text != "12345", (resp.status_code, resp.text)
    assert not errors


@pytest.mark.parametrize("encrypt", [False, True], ids=["plain", "safe"])
def test_a_400_digit_timestamp_is_refused_on_post(base_url, svc, errors, encrypt):
    xml = to_xml({"ToUserName": ACCOUNT, "FromUserName": "o_hostile", "CreateTime": "1",
                  "MsgType": "text", "Content": "你好", "MsgId": "1"})
    resp = post(base_url, *signed(svc, xml, encrypt, timestamp=HUGE))
    assert 400 <= resp.status_code < 500, (resp.status_code, resp.text)
    assert not errors and svc.redis.keys("volbot:*") == []


@pytest.mark.parametrize("scene, answer", [
    ("act:" + "7" * 5000, "这个二维码对应的活动不存在或已下线。"),
    ("st:" + "7" * 5000, "这个二维码对应的站点不存在或已停用。"),
    ("act:" + "9" * 20, "这个二维码对应的活动不存在或已下线。"),  # past a SQL INTEGER
    ("st:²", "这个二维码对应的站点不存在或已停用。"),  # str.isdigit() says yes, int() says no
])
def test_a_scene_with_absurd_digits_gets_the_scene_answer(wechat, errors, scene, answer):
    assert answer in wechat.event("o_hostile", "SCAN", scene, Ticket="t")
    fields = wechat.sender.event("o_hostile", "scancode_waitmsg", "SCAN_CHECKIN",
                                 ScanCodeInfo={"ScanType": "qrcode", "ScanResult": scene})
    assert answer in wechat.send(fields).text
    assert not errors


# ---- the shared readers, and the handlers that read numbers from text --------------------

@pytest.mark.parametrize("text, value", [
    ("12", 12), (" 12 ", 12), ("2147483647", 2147483647), ("2147483648", None), ("0", None), ("-1", None),
    ("9" * 5000, None), ("²", None), ("٣", None), ("1_000", None), ("+5", None), ("1.0", None), ("", None),
    (None, None), ({"a": "1"}, None),
])
def test_record_ids_are_ascii_digits_in_sql_integer_range(text, value):
    assert record_id(text) == value


@pytest.mark.parametrize("text, value", [
    ("36.7150", 36.715), ("-0.5", -0.5), ("90", 90.0), ("90.0001", None), ("1e1", None), ("nan", None),
    ("inf", None), ("9" * 400, None), ("1.2.3", None), (".5", None), ("٣٦.٧", None), ("", None),
])
def test_decimals_are_plain_and_bounded(text, value):
    assert bounded_decimal(text, -90, 90) == value


def test_numbers_out_of_shape_in_the_xml_read_as_absent():
    def parse(**fields):
        return Protocol.parse(to_xml(fresh(_base("location", **fields))))

    m = parse(MsgId="9" * 5000, CreateTime="1" * 400, Location_X="1e400", Location_Y="nan")
    assert (m.msg_id, m.create_time, m.location) == (0, 0, None)
    m = parse(MsgId="18446744073709551615", CreateTime="1700000000", Location_X="36.7", Location_Y="119.1")
    assert (m.msg_id, m.create_time, m.location.lat) == (2**64 - 1, 1700000000, 36.7)
    with pytest.raises(BadRequest):
        parse(ToUserName="g" * 65)


@pytest.mark.parametrize("text", ["9" * 5000 + "分钟", "1.2.3小时", "9" * 400 + "小时", "٣小时", "2小时" + "9" * 5000 + "分"])
def test_unreadable_service_minutes_get_the_hint(text):
    with pytest.raises(Invalid, match="请回复服务用了多少分钟"):
        read_minutes(None, Message(openid="o_hostile", text=text), {})


@pytest.mark.parametrize("text, minutes", [("90", 90), ("1.5小时", 90), ("一个半小时", 90), ("两小时十分", 130),
                                           ("半小时", 30), ("45分钟", 45)])
def test_service_minutes_still_read(text, minutes):
    assert read_minutes(None, Message(openid="o_hostile", text=text), {}) == minutes


@pytest.mark.parametrize("text, shown", [("通过 " + "9" * 5000, "999999…"), ("通过 1 ٣", "٣"), ("驳回 0 不对", "0")])
def test_review_picks_out_of_range_get_the_hint(text, shown):
    with pytest.raises(Invalid, match=f"序号 {shown} 不在列表里"):
        read_decision(None, Message(openid="o_hostile", text=text), {"ids": [1, 2]})


# ---- the property: every field of every kind, any value ----------------------------------

# Digit runs of the lengths where number parsers break: past a SQL INTEGER (10), past a
# BIGINT (19), past a float (309), past what Python's int() reads (4300); and any length.
DIGITS = st.one_of(st.sampled_from([10, 19, 20, 309, 400, 4301, 5000]), st.integers(1, 6000)).map(lambda n: "9" * n)
NUMBERS = st.one_of(
    st.integers(min_value=-(10**40), max_value=10**40).map(str),
    DIGITS,
    st.floats().map(repr),
    st.sampled_from(["1e400", "-1e400", "nan", "inf", "-0", "1.2.3", "0x1F", "1_000", "+5", " 7 ",
                     "٣٦.٧", "²", "１２", "1e-400", ".", "-", "00000000000000000000001"]),
)
# Characters XML 1.0 forbids (the app must refuse such XML with a 4xx), kept apart so that
# most values are legal text and reach the handlers.
XML_ILLEGAL = "\x00\x01\x08\x0b\x0c\x1f\ufffe\uffff"
LEGAL_CHAR = st.characters(blacklist_categories=("Cs",), blacklist_characters=XML_ILLEGAL)
TEXT = st.text(LEGAL_CHAR, max_size=80)
ILLEGAL = st.tuples(TEXT, st.text(st.sampled_from(XML_ILLEGAL), min_size=1, max_size=3)).map("".join)
LONG = st.one_of(st.integers(300, 12000).map(lambda n: "长" * n), st.text(LEGAL_CHAR, min_size=300, max_size=1500))
PREFIXES = ["act:", "st:", "cm:", "qrscene_act:", "qrscene_st:", "qrscene_cm:", "qrscene_", "SCAN_CHECKIN",
            "ORDER", "http://"]
PREFIXED = st.tuples(st.sampled_from(PREFIXES), st.one_of(DIGITS, NUMBERS, TEXT)).map("".join)
SPECIAL = st.sampled_from(["", " ", "\n\t", "]]>", "<", "&amp;", "act:", "st:", "qrscene_"])
ANY = st.one_of(NUMBERS, TEXT, LONG, PREFIXED, SPECIAL, ILLEGAL, st.sampled_from([ABSENT, NESTED, REPEATED]))
# Where a scene or a menu key is read, scene-shaped values are what reach the parsers.
KEY_FIELDS = {"EventKey", "ScanResult", "Content", "Recognition", "Label"}


def _base(msg_type: str, **fields) -> dict:
    return {"ToUserName": ACCOUNT, "FromUserName": "o_act_a", "CreateTime": FRESH, "MsgType": msg_type, **fields}


def _event(event: str, **fields) -> dict:
    return _base("event", Event=event, **fields)


# One well-formed push of each kind WeChat sends an Official Account (messages, then events,
# then kinds the app does not act on), as the starting values the property replaces.
KINDS = {
    "text": _base("text", Content="签到", MsgId=FRESH),
    "image": _base("image", PicUrl="http://127.0.0.1/p.jpg", MediaId="m1", MsgId=FRESH),
    "voice": _base("voice", MediaId="m2", Format="amr", Recognition="附近站点", MediaId16K="m3",
                   MsgId=FRESH),
    "video": _base("video", MediaId="m4", ThumbMediaId="t4", MsgId=FRESH),
    "shortvideo": _base("shortvideo", MediaId="m5", ThumbMediaId="t5", MsgId=FRESH),
    "location": _base("location", Location_X="36.7150", Location_Y="119.1300", Scale="15",
                      Label="奎文区志愿服务广场", MsgId=FRESH),
    "link": _base("link", Title="标题", Description="描述", Url="http://127.0.0.1/a", MsgId=FRESH),
    "file": _base("file", Title="a.pdf", Description="", FileKey="k", FileMd5="d41d8cd98f00b204",
                  FileTotalLen="100", MsgId=FRESH),
    "subscribe": _event("subscribe", EventKey="qrscene_act:2", Ticket="tk"),
    "unsubscribe": _event("unsubscribe", EventKey=""),
    "SCAN": _event("SCAN", EventKey="act:2", Ticket="tk"),
    "LOCATION": _event("LOCATION", Latitude="36.7150", Longitude="119.1300", Precision="30.000000"),
    "CLICK": _event("CLICK", EventKey="SCAN_CHECKIN"),
    "VIEW": _event("VIEW", EventKey="http://127.0.0.1/x", MenuId="1"),
    "scancode_push": _event("scancode_push", EventKey="SCAN_CHECKIN",
                            ScanCodeInfo={"ScanType": "qrcode", "ScanResult": "act:2"}),
    "scancode_waitmsg": _event("scancode_waitmsg", EventKey="SCAN_CHECKIN",
                               ScanCodeInfo={"ScanType": "qrcode", "ScanResult": "st:2"}),
    "location_select": _event("location_select", EventKey="NEARBY", SendLocationInfo={
        "Location_X": "36.7150", "Location_Y": "119.1300", "Scale": "15", "Label": "广场", "Poiname": "广场"}),
    "pic_sysphoto": _event("pic_sysphoto", EventKey="P", SendPicsInfo={
        "Count": "1", "PicList": {"item": {"PicMd5Sum": "1b5f7c23b5bf75682a53e7b6d163e185"}}}),
    "TEMPLATESENDJOBFINISH": _event("TEMPLATESENDJOBFINISH", MsgID="200163836", Status="success"),
    "MASSSENDJOBFINISH": _event("MASSSENDJOBFINISH", MsgID="1000001625", Status="err(30003)",
                                TotalCount="100", FilterCount="80", SentCount="75", ErrorCount="5"),
    "subscribe_msg_popup_event": _event("subscribe_msg_popup_event", SubscribeMsgPopupEvent={"List": {
        "TemplateId": "VRR0UEO9VJOLs0MHlU0OilqX6MVFDwH3_3gz3Oc0NIc", "SubscribeStatusString": "accept",
        "PopupScene": "2"}}),
    "subscribe_msg_change_event": _event("subscribe_msg_change_event", SubscribeMsgChangeEvent={"List": {
        "TemplateId": "VRR0UEO9VJOLs0MHlU0OilqX6MVFDwH3_3gz3Oc0NIc", "SubscribeStatusString": "reject"}}),
    "subscribe_msg_sent_event": _event("subscribe_msg_sent_event", SubscribeMsgSentEvent={"List": {
        "TemplateId": "VRR0UEO9VJOLs0MHlU0OilqX6MVFDwH3_3gz3Oc0NIc", "MsgID": "1700827132819554304",
        "ErrorCode": "0", "ErrorStatus": "success"}}),
    "unknown_type": _base("miniprogrampage", Title="t", AppId="wx1", PagePath="p", MsgId=FRESH),
}


def _paths(fields: dict, prefix: tuple = ()) -> list[tuple]:
    """Every field's path, nested ones included: ("ScanCodeInfo", "ScanResult")."""
    out = []
    for name, value in fields.items():
        out.append(prefix + (name,))
        if isinstance(value, dict):
            out.extend(_paths(value, prefix + (name,)))
    return out


# Fields every push has; the others are the kind's own values, which the handlers read.
ENVELOPE = {("ToUserName",), ("FromUserName",), ("CreateTime",), ("MsgType",), ("Event",)}


@st.composite
def hostile_fields(draw, template: dict) -> dict:
    """The template with one of its own fields and up to two others (nested ones too)
    replaced by anything. A few at a time: with all of them varied, nearly every push holds
    some character XML forbids, or a broken sender, and is refused before a handler reads
    a value."""
    fields = copy.deepcopy(template)
    paths = _paths(template)
    own = [p for p in paths if p not in ENVELOPE] or paths
    replaced = {draw(st.sampled_from(own), label="own field")}
    replaced |= draw(st.sets(st.sampled_from(paths), max_size=2), label="others")
    for path in sorted(replaced):
        parent = fields
        for name in path[:-1]:
            parent = parent.get(name)
            if not isinstance(parent, dict):
                break
        else:
            strategy = st.one_of(PREFIXED, ANY) if path[-1] in KEY_FIELDS else ANY
            parent[path[-1]] = draw(strategy, label=".".join(path))
    return fields


COMMANDS = sorted(registry.commands)  # every journey's menu key


@pytest.fixture
def world(svc):
    """Places, activities and volunteers, so scenes, check-ins and locations find rows."""
    seeds.apply(svc, ["act_base", "act_on_shift"])
    return svc


@pytest.mark.parametrize("kind", list(KINDS))
@settings(max_examples=MAX_EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.data_too_large, HealthCheck.large_base_example])
@given(data=st.data())
def test_any_value_in_any_field_is_answered(base_url, world, errors, kind, data):
    """Sometimes a menu tap first opens a journey, so the values reach its form's step."""
    encrypt = data.draw(st.booleans(), label="safe mode")
    errors.clear()
    lead = data.draw(st.one_of(st.none(), st.sampled_from(COMMANDS)), label="menu tap first")
    if lead is not None:
        params, body = signed(world, to_xml(fresh(_event("CLICK", EventKey=lead))), encrypt)
        assert_answered(post(base_url, params, body), params, errors)
    fields = data.draw(hostile_fields(KINDS[kind]), label="fields")
    params, body = signed(world, to_xml(fresh(fields)), encrypt)
    assert_answered(post(base_url, params, body), params, errors)


# ---- the query-string envelope ----------------------------------------------------------

QUERY_TEXT = st.one_of(TEXT, ILLEGAL, DIGITS, LONG, NUMBERS, SPECIAL, st.just(ABSENT))


@settings(max_examples=MAX_EXAMPLES * 2, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.data_too_large])
@given(data=st.data())
def test_any_value_in_the_query_is_answered(base_url, svc, errors, data):
    """timestamp and nonce are signed whatever they hold (so the checks behind the
    signature are reached); the other parameters are anything, or left out."""
    now = str(int(svc.clock.timestamp()))
    signed_text = st.one_of(DIGITS, NUMBERS, TEXT, ILLEGAL, LONG, SPECIAL)
    timestamp = data.draw(st.one_of(st.just(now), signed_text), label="timestamp")
    nonce = data.draw(st.one_of(st.just("1320562132"), signed_text), label="nonce")
    encrypt = data.draw(st.booleans(), label="safe mode")
    xml = to_xml({"ToUserName": ACCOUNT, "FromUserName": "o_hostile_query", "CreateTime": now,
                  "MsgType": "text", "Content": "菜单", "MsgId": str(random.randint(1, 10**18))})
    params, body = signed(svc, xml, encrypt, timestamp=timestamp, nonce=nonce)
    for name in ("signature", "msg_signature", "encrypt_type", "openid", "echostr"):
        value = data.draw(st.one_of(st.just(params.get(name, ABSENT)), QUERY_TEXT), label=name)
        if value is ABSENT:
            params.pop(name, None)
        else:
            params[name] = value
    errors.clear()
    if data.draw(st.booleans(), label="GET"):
        resp = requests.get(base_url + "/wechat", params=params, timeout=15)
        assert resp.status_code < 500 and BUSY_TEXT not in resp.text, (resp.status_code, resp.text[:300])
        assert not errors, [r.getMessage() for r in errors]
        return
    assert_answered(post(base_url, params, body), params, errors)


@pytest.mark.parametrize("encrypt", [False, True], ids=["plain", "safe"])
def test_the_untouched_templates_are_answered(base_url, world, errors, encrypt):
    """The control for the property: its starting values are well-formed pushes, answered
    with 200 (not refused), so what it varies is the values and nothing else."""
    for kind, fields in KINDS.items():
        params, body = signed(world, to_xml(fresh(fields)), encrypt)
        resp = post(base_url, params, body)
        assert resp.status_code == 200, (kind, resp.status_code, resp.text[:200])
        assert_answered(resp, params, errors)
