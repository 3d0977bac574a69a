"""The WeChat emulator behaves as WeChat's API does for what we use: tokens, template sends
with client_msg_id dedup and quotas, the customer-service window, subscription notices,
menu, QR codes, delivery callbacks, fault injection and the call record."""

from __future__ import annotations

import requests

from tests.conftest import TEST_APPID


def token(emulator, **extra) -> str:
    body = {"grant_type": "client_credential", "appid": TEST_APPID, "secret": "volbot-dev-secret", **extra}
    return requests.post(emulator.base + "stable_token", json=body, timeout=5).json()["access_token"]


def call(emulator, path, tok, body=None, method="post"):
    return getattr(requests, method)(emulator.base + path, params={"access_token": tok}, json=body, timeout=5).json()


def template(openid, cmid=None):
    body = {"touser": openid, "template_id": "t1", "data": {"thing1": {"value": "hi"}}}
    if cmid:
        body["client_msg_id"] = cmid
    return body


def test_tokens_stable_legacy_and_expiry(emulator):
    bad = requests.post(emulator.base + "stable_token", json={"appid": TEST_APPID, "secret": "wrong"}).json()
    assert bad["errcode"] == 40125
    first = token(emulator)
    assert token(emulator) == first  # normal mode: the same live token for everyone
    forced = token(emulator, force_refresh=True)
    assert forced != first
    legacy = requests.get(emulator.base + "token", params={"grant_type": "client_credential", "appid": TEST_APPID,
                                                            "secret": "volbot-dev-secret"}).json()
    assert legacy["expires_in"] == 7200
    assert call(emulator, "message/template/send", forced, template("o_emu_user1"))["errcode"] == 0
    assert call(emulator, "message/template/send", "nonsense", template("o_emu_user1"))["errcode"] == 40001
    assert call(emulator, "message/template/send", None, template("o_emu_user1"))["errcode"] == 41001
    emulator.admin("clock", advance=7201)
    assert call(emulator, "message/template/send", forced, template("o_emu_user1"))["errcode"] == 42001
    emulator.admin("revoke-tokens")
    assert call(emulator, "message/template/send", token(emulator), template("o_emu_user1"))["errcode"] == 0


def test_template_dedup_recipients_and_quota(emulator):
    tok = token(emulator)
    a = call(emulator, "message/template/send", tok, template("o_emu_user1", "c-1"))
    b = call(emulator, "message/template/send", tok, template("o_emu_user1", "c-1"))
    assert a["errcode"] == b["errcode"] == 0 and a["msgid"] == b["msgid"]
    assert len(emulator.messages("o_emu_user1")) == 1 and emulator.stats()["dedup_hits"] == 1
    emulator.admin("clock", advance=601)  # the window is 10 minutes
    assert call(emulator, "message/template/send", tok, template("o_emu_user1", "c-1"))["msgid"] != a["msgid"]

    assert call(emulator, "message/template/send", tok, template("bad"))["errcode"] == 40003
    emulator.admin("users", openid="o_emu_gone", following=False)
    assert call(emulator, "message/template/send", tok, template("o_emu_gone"))["errcode"] == 43004
    emulator.admin("settings", template_daily_quota=3)
    assert call(emulator, "message/template/send", tok, template("o_emu_user2"))["errcode"] == 0
    assert call(emulator, "message/template/send", tok, template("o_emu_user3"))["errcode"] == 45009


def test_customer_service_window(emulator):
    tok = token(emulator)
    text = {"touser": "o_emu_cs", "msgtype": "text", "text": {"content": "您好"}}
    assert call(emulator, "message/custom/send", tok, text)["errcode"] == 45015  # never wrote to us
    emulator.admin("interactions", openid="o_emu_cs", kind="message")
    assert [call(emulator, "message/custom/send", tok, text)["errcode"] for _ in range(6)] == [0] * 5 + [45047]
    emulator.admin("clock", advance=48 * 3600 + 1)
    tok = token(emulator)  # the old one expired meanwhile
    assert call(emulator, "message/custom/send", tok, text)["errcode"] == 45015
    emulator.admin("interactions", openid="o_emu_cs", kind="event")  # a click: 3 in 1 minute
    assert [call(emulator, "message/custom/send", tok, text)["errcode"] for _ in range(4)] == [0, 0, 0, 45047]


def test_subscription_notice_menu_and_qr(emulator):
    tok = token(emulator)
    notice = {"touser": "o_emu_sub", "template_id": "n1", "data": {"thing1": {"value": "巴士"}}}
    assert call(emulator, "message/subscribe/bizsend", tok, notice)["errcode"] == 40037  # not the account's
    emulator.admin("notice-templates", template_id="n1", consent="long_term")
    assert call(emulator, "message/subscribe/bizsend", tok, notice)["errcode"] == 43101  # no consent yet
    emulator.admin("notice-consent", openid="o_emu_sub", template_id="n1", accept=True)
    assert call(emulator, "message/subscribe/bizsend", tok, notice)["errcode"] == 0
    emulator.admin("users", openid="o_emu_sub", refuses=True)
    assert call(emulator, "message/subscribe/bizsend", tok, notice)["errcode"] == 43101

    assert call(emulator, "menu/get", tok, method="get")["errcode"] == 46003
    too_long = {"button": [{"type": "click", "name": "预约志愿服务十字以上", "key": "ORDER"}]}
    assert call(emulator, "menu/create", tok, too_long)["errcode"] == 40018
    four = {"button": [{"type": "click", "name": "a", "key": "A"}] * 4}
    assert call(emulator, "menu/create", tok, four)["errcode"] == 40016
    menu = {"button": [{"type": "click", "name": "预约", "key": "ORDER"},
                       {"name": "我的", "sub_button": [{"type": "click", "name": "我的时长", "key": "MY_HOURS"}]}]}
    assert call(emulator, "menu/create", tok, menu)["errcode"] == 0
    assert call(emulator, "menu/get", tok, method="get")["menu"] == menu

    qr = call(emulator, "qrcode/create", tok, {"action_name": "QR_LIMIT_STR_SCENE",
                                               "action_info": {"scene": {"scene_str": "cm:KW001"}}})
    png = requests.get(emulator.base + "showqrcode", params={"ticket": qr["ticket"]})
    assert png.status_code == 200 and png.content.startswith(b"\x89PNG")
    assert requests.get(emulator.base + "showqrcode", params={"ticket": "nope"}).status_code == 404


def test_faults_latency_and_rate_limit(emulator):
    tok = token(emulator)
    emulator.fault(endpoint="template", errcode=-1, times=2)
    codes = [call(emulator, "message/template/send", tok, template("o_emu_user1"))["errcode"] for _ in range(3)]
    assert codes == [-1, -1, 0]
    emulator.fault(endpoint="template", latency_ms=300, times=1)
    import time

    started = time.monotonic()
    call(emulator, "message/template/send", tok, template("o_emu_user1"))
    assert time.monotonic() - started >= 0.3
    emulator.fault(endpoint="template", rate_per_second=2)
    codes = [call(emulator, "message/template/send", tok, template("o_emu_user1"))["errcode"] for _ in range(4)]
    assert codes.count(45011) >= 1
    recorded = emulator.calls("template")
    assert len(recorded) == 8 and recorded[0]["errcode"] == -1


def test_template_finish_callback_reaches_the_webhook(emulator, base_url):
    emulator.admin("settings", callback_url=base_url + "/wechat", callback_delay_ms=0)
    tok = token(emulator)
    sent = call(emulator, "message/template/send", tok, template("o_emu_cb"))
    emulator.wait_callbacks()
    [callback] = emulator.calls("callback")
    assert callback["msgid"] == sent["msgid"] and callback["status"] == "success"
    assert callback["http_status"] == 200 and callback["body"] in ("success", "")


def test_concurrent_sends_are_each_recorded_once(emulator):
    from concurrent.futures import ThreadPoolExecutor

    tok = token(emulator)
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda i: call(emulator, "message/template/send", tok,
                                               template(f"o_emu_many{i:03d}", f"c-{i % 50}")), range(200)))
    assert all(r["errcode"] == 0 for r in results)
    assert len({r["msgid"] for r in results}) == 200  # different openids: no dedup across users
    assert emulator.stats()["templates_accepted"] == 200 and len(emulator.calls("template")) == 200


def test_notice_consent_field_rules_and_mass_send_quota(emulator):
    tok = token(emulator)
    emulator.admin("notice-templates", template_id="once", consent="one_time")
    once = {"touser": "o_emu_once", "template_id": "once", "data": {"thing1": {"value": "明天植树"}}}
    emulator.admin("notice-consent", openid="o_emu_once", template_id="once", accept=True)
    # One acceptance of a one-time template: one notice.
    assert [call(emulator, "message/subscribe/bizsend", tok, once)["errcode"] for _ in range(2)] == [0, 43101]
    emulator.admin("notice-consent", openid="o_emu_once", template_id="once", accept=True)
    emulator.admin("notice-consent", openid="o_emu_once", template_id="once", via="settings")  # turned off
    assert call(emulator, "message/subscribe/bizsend", tok, once)["errcode"] == 43101
    # Field rules since 2023, for templates and notices alike.
    for data in ({"first": {"value": "标题"}}, {"thing1": {"value": "二" * 21}}, {"phrase1": {"value": "已经完成了的"}},
                 {"character_string1": {"value": "编号一"}}, {"time1": {"value": "明天上午"}}, {"thing1": {"value": ""}},
                 {"number1": {"value": "100小时"}}):
        assert call(emulator, "message/template/send", tok, {"touser": "o_emu_once", "template_id": "t1",
                                                            "data": data})["errcode"] == 47003, data
    good = {"thing1": {"value": "二" * 20}, "phrase2": {"value": "已完成"}, "time3": {"value": "2026年12月7日 09:00~11:00"},
            "character_string4": {"value": "KW-2026-01"}, "number5": {"value": "12.5"}}
    assert call(emulator, "message/template/send", tok, {"touser": "o_emu_once", "template_id": "t1",
                                                        "data": good})["errcode"] == 0
    # Mass send by tag: each follower gets at most 4 a month; clientmsgid dedups.
    tag = call(emulator, "tags/create", tok, {"tag": {"name": "公告"}})["tag"]["id"]
    assert call(emulator, "tags/members/batchtagging", tok, {"openid_list": ["o_emu_m1", "o_emu_m2"], "tagid": tag})[
        "errcode"] == 0
    send = {"filter": {"is_to_all": False, "tag_id": tag}, "msgtype": "text", "text": {"content": "通知"}}
    for i in range(5):
        assert call(emulator, "message/mass/sendall", tok, {**send, "clientmsgid": f"c{i}"})["errcode"] == 0
    again = call(emulator, "message/mass/sendall", tok, {**send, "clientmsgid": "c0"})
    assert again["errcode"] == 45065 and again["msg_id"]
    sends = requests.get(emulator.url + "/_emulator/mass", timeout=5).json()["sends"]
    assert [(s["sent"], s["filtered"]) for s in sends] == [(2, 0)] * 4 + [(0, 2)]
