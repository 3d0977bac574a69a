"""The browser simulator's server side: it is a WeChat client (signed, optionally encrypted
XML over HTTP to /wechat), it shows the district, and it is off outside development/demo."""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest
import requests
from sqlalchemy import select
from werkzeug.serving import make_server

from bot.app import create_app
from demo import geography
from simulator import client, inbox


class Recorder:
    """WSGI middleware remembering every request to /wechat (query and body)."""

    def __init__(self, app):
        self.app = app
        self.seen: list[dict] = []

    def __call__(self, environ, start_response):
        if environ.get("PATH_INFO") == "/wechat" and environ.get("REQUEST_METHOD") == "POST":
            length = int(environ.get("CONTENT_LENGTH") or 0)
            body = environ["wsgi.input"].read(length)
            import io

            environ["wsgi.input"] = io.BytesIO(body)
            self.seen.append({"query": environ.get("QUERY_STRING", ""), "body": body.decode()})
        return self.app(environ, start_response)


def serve(app):
    """Serve `app` on a free loopback port; its simulator posts to this server's /wechat
    (SIMULATOR_WEBHOOK_URL: the port is only known now)."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    url = f"http://127.0.0.1:{server.server_port}"
    if "VOLBOT" in getattr(app, "config", {}):
        app.config["VOLBOT"] = replace(app.config["VOLBOT"], simulator_webhook_url=url + "/wechat")
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, url


@pytest.fixture
def sim(svc):
    app = create_app(config=replace(svc.config, env="development"), services=svc)
    recorder = Recorder(app.wsgi_app)
    app.wsgi_app = recorder
    server, url = serve(app)
    yield url, recorder
    server.shutdown()


def test_page_and_assets_are_local(sim):
    url, _ = sim
    page = requests.get(url + "/simulator/")
    assert page.status_code == 200 and "公众号模拟器" in page.text
    assert "http://" not in page.text and "https://" not in page.text  # no internet assets
    for asset in ("app.js", "app.css"):
        assert requests.get(f"{url}/simulator/static/simulator/{asset}").status_code == 200


def test_a_crafted_host_header_does_not_redirect_the_signed_push(sim):
    """The target comes from configuration: a Host naming another server (here one that
    records what reaches it) gets the push nowhere but our own webhook."""
    url, recorder = sim
    other = Recorder(lambda environ, start_response: start_response("200 OK", []) or [b"success"])
    server, other_url = serve_plain(other)
    try:
        resp = requests.post(url + "/simulator/api/send", headers={"Host": other_url.split("//")[1]},
                             json={"openid": "o_sim_host", "kind": "text", "text": "菜单"})
        assert resp.json()["ok"] and len(recorder.seen) == 1
        assert other.seen == []
    finally:
        server.shutdown()


def serve_plain(wsgi):
    server = make_server("127.0.0.1", 0, wsgi, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_port}"


@pytest.mark.parametrize("encrypt", [False, True])
def test_typing_posts_signed_xml_to_the_webhook(sim, encrypt):
    url, recorder = sim
    resp = requests.post(url + "/simulator/api/send",
                         json={"openid": "o_sim_a", "kind": "text", "text": "菜单", "encrypt": encrypt})
    data = resp.json()
    assert data["ok"] and data["type"] == "text" and data["encrypted"] is encrypt
    assert "请回复数字选择服务" in data["text"]
    assert len(recorder.seen) == 1
    sent = recorder.seen[0]
    assert "signature=" in sent["query"] and "timestamp=" in sent["query"]
    if encrypt:
        assert "encrypt_type=aes" in sent["query"] and "<Encrypt>" in sent["body"] and "菜单" not in sent["body"]
    else:
        assert "<Content><![CDATA[菜单]]></Content>" in sent["body"]


def test_follow_then_click_a_menu_key(sim):
    url, recorder = sim
    follow = requests.post(url + "/simulator/api/send", json={"openid": "o_sim_b", "kind": "subscribe"}).json()
    assert "欢迎关注" in follow["text"]
    click = requests.post(url + "/simulator/api/send",
                          json={"openid": "o_sim_b", "kind": "click", "key": "HELP"}).json()
    assert click["ok"] and click["type"] in ("text", "none")
    assert "<Event><![CDATA[CLICK]]></Event>" in recorder.seen[1]["body"] or "<Encrypt>" in recorder.seen[1]["body"]


def test_scan_by_a_newcomer_follows_through_the_code(sim):
    url, recorder = sim
    requests.post(url + "/simulator/api/send",
                  json={"openid": "o_sim_c", "kind": "scan", "key": "cm:KW001", "followed": False,
                        "encrypt": False})
    requests.post(url + "/simulator/api/send",
                  json={"openid": "o_sim_c", "kind": "scan", "key": "cm:KW001", "followed": True,
                        "encrypt": False})
    first, second = (s["body"] for s in recorder.seen)
    assert "<Event><![CDATA[subscribe]]></Event>" in first and "qrscene_cm:KW001" in first
    assert "<Event><![CDATA[SCAN]]></Event>" in second and "<EventKey><![CDATA[cm:KW001]]>" in second


def test_location_message(sim):
    url, recorder = sim
    reply = requests.post(url + "/simulator/api/send",
                          json={"openid": "o_sim_d", "kind": "location", "lat": 36.71, "lng": 119.13,
                                "label": "奎文区", "encrypt": False}).json()
    assert reply["ok"]
    assert "<Location_X>36.71</Location_X>" in recorder.seen[0]["body"]


@pytest.mark.parametrize("bad", [
    {"openid": "x y", "kind": "text", "text": "hi"},
    {"openid": "o1", "kind": "teleport"},
    {"openid": "o1", "kind": "text", "text": "   "},
    {"openid": "o1", "kind": "location", "lat": "north", "lng": 1},
    {"openid": "o1", "kind": "location", "lat": 91, "lng": 1},
    {"openid": "o1", "kind": "click"},
    [],
])
def test_bad_actions_are_refused_before_anything_is_sent(sim, bad):
    url, recorder = sim
    resp = requests.post(url + "/simulator/api/send", json=bad)
    assert resp.status_code == 400 and resp.json()["ok"] is False
    assert recorder.seen == []


def test_world_has_the_district_map_and_a_menu(sim):
    url, _ = sim
    world = requests.get(url + "/simulator/api/world").json()
    assert len(world["map"]["outline"]) >= 10
    assert world["menu"] and all("name" in b for b in world["menu"])
    assert isinstance(world["places"], list) and isinstance(world["personas"], list)


def test_refused_outside_development_and_demo(svc):
    for env in ("production", "testing"):
        app = create_app(config=replace(svc.config, env=env), services=svc)
        http = app.test_client()
        for path in ("/simulator/", "/simulator/api/world", "/simulator/static/simulator/app.js"):
            assert http.get(path).status_code == 404, (env, path)
        assert http.post("/simulator/api/send", json={"openid": "o", "kind": "text", "text": "x"}).status_code == 404


def test_pushes_without_an_emulator_say_so(sim):
    url, _ = sim
    data = requests.get(url + "/simulator/api/pushes", params={"openid": "o_sim_e"}).json()
    assert data["ok"] is False and data["pushes"] == []
    assert requests.get(url + "/simulator/api/pushes", params={"openid": "bad id"}).status_code == 400


def test_emulator_root_from_the_api_base():
    assert inbox.emulator_root("http://127.0.0.1:8101/cgi-bin/") == "http://127.0.0.1:8101"
    assert inbox.emulator_root("https://api.weixin.qq.com/cgi-bin/") is None


def test_outline_contains_its_streets_and_not_the_far_away():
    for _, lat, lng in geography.STREETS:
        assert geography.contains(lat, lng)
    assert not geography.contains(36.70, 119.05)  # Weicheng, west of the Bailang River
    assert not geography.contains(36.80, 119.15)
    assert client.OPENID.match("o_sim_abc") and not client.OPENID.match("a/b")


def test_template_pushes_come_back_from_the_emulator_in_template_order(svc):
    from emulator import create_emulator

    emulator = create_emulator({svc.config.wechat_appid: svc.config.wechat_secret})
    emu_server, emu_url = serve(emulator)
    app = create_app(config=replace(svc.config, env="development", wechat_api_base=emu_url + "/cgi-bin/"),
                     services=svc)
    server, url = serve(app)
    try:
        token = requests.get(emu_url + "/cgi-bin/token", params={
            "grant_type": "client_credential", "appid": svc.config.wechat_appid,
            "secret": svc.config.wechat_secret}).json()["access_token"]
        for place in ("文化广场", "东门"):
            requests.post(emu_url + "/_emulator/clock", json={"advance": 61})  # a minute apart
            sent = requests.post(emu_url + "/cgi-bin/message/template/send", params={"access_token": token},
                                 json={"touser": "o_sim_push", "template_id": "volbot-bus-visit", "data": {
                                     "thing1": {"value": "樱园社区"},
                                     "time2": {"value": "12月01日 09:00"}, "thing3": {"value": place},
                                     "thing4": {"value": "义诊"}}}).json()
            assert sent["errcode"] == 0
        first = requests.get(url + "/simulator/api/pushes", params={"openid": "o_sim_push"}).json()
        assert first["ok"] and len(first["pushes"]) == 2
        card = first["pushes"][0]
        assert card["title"] == "志愿巴士到访通知"  # the template's own title: no first line since 2023
        assert card["fields"] == [["服务社区", "樱园社区"], ["到访时间", "12月01日 09:00"], ["服务地点", "文化广场"],
                                  ["服务项目", "义诊"]]
        # Each card carries its own arrival time (the emulator's record of the send).
        recorded = requests.get(emu_url + "/_emulator/messages", params={"openid": "o_sim_push"}).json()
        assert [p["sent_at"] for p in first["pushes"]] == [
            datetime.fromtimestamp(m["at"], timezone(timedelta(hours=8))).strftime("%m月%d日 %H:%M:%S")
            for m in recorded]
        assert first["pushes"][0]["sent_at"] != first["pushes"][1]["sent_at"]
        again = requests.get(url + "/simulator/api/pushes",
                             params={"openid": "o_sim_push", "since": first["cursor"]}).json()
        assert again["pushes"] == [] and again["cursor"] == first["cursor"]
        other = requests.get(url + "/simulator/api/pushes", params={"openid": "o_sim_other"}).json()
        assert other["pushes"] == []
    finally:
        server.shutdown()
        emu_server.shutdown()


def test_world_after_seeding_has_places_scans_and_personas(sim, svc):
    from datetime import datetime, timezone

    from demo import district

    with svc.db.transaction() as s:
        district.seed(s, now=datetime.now(timezone.utc), pii_key=svc.config.pii_key, volunteers=20)
    url, _ = sim
    world = requests.get(url + "/simulator/api/world").json()
    kinds = {p["kind"] for p in world["places"]}
    assert kinds == {"plaza", "station"} and len(world["places"]) >= 270
    scenes = [s["scene"] for s in world["scans"]]
    assert any(s.startswith("act:") for s in scenes) and any(s.startswith("st:") for s in scenes)
    assert any(s.startswith("cm:DEMO-") for s in scenes)
    roles = {p["role"] for p in world["personas"]}
    assert roles == {"resident", "volunteer", "coordinator"}
    # A persona's scan of an activity goes out as a real SCAN event with that scene.
    act = next(s for s in scenes if s.startswith("act:"))
    reply = requests.post(url + "/simulator/api/send", json={"openid": "o_demo_vol_001", "kind": "scan",
                                                             "key": act, "encrypt": False}).json()
    assert reply["ok"]


def test_the_fake_subscribe_button_is_a_tap_that_reaches_the_webhook_as_wechat_reports_it(svc):
    """The in-app browser's 允许 on wx-open-subscribe: the simulator asks the emulator, which
    records the consent and pushes subscribe_msg_popup_event to our webhook (signed), which
    records it in SQL (rules.notices) — the path a real tap in WeChat takes."""
    from emulator import create_emulator
    from store.models import NoticeConsent

    emulator = create_emulator({svc.config.wechat_appid: svc.config.wechat_secret}, token=svc.config.wechat_token)
    emu_server, emu_url = serve(emulator)
    app = create_app(config=replace(svc.config, env="development", wechat_api_base=emu_url + "/cgi-bin/"),
                     services=svc)
    server, url = serve(app)
    try:
        requests.post(emu_url + "/_emulator/settings", json={"callback_url": url + "/wechat"})
        ids = ["volbot-bus-visit", "volbot-bus-change"]
        tapped = requests.post(url + "/simulator/api/subscribe-tap",
                               json={"openid": "o_sim_tap", "template_ids": ids}).json()
        assert tapped == {"ok": True, "template_ids": ids}
        assert {c["template_id"] for c in requests.get(emu_url + "/_emulator/consents",
                                                       params={"openid": "o_sim_tap"}).json()} == set(ids)
        deadline = time.monotonic() + 10  # the emulator posts its callbacks from a thread
        while time.monotonic() < deadline:
            with svc.db.session() as s:
                rows = s.scalars(select(NoticeConsent).where(NoticeConsent.openid == "o_sim_tap")).all()
                if len(rows) == 2:
                    break
            time.sleep(0.05)
        assert {(r.template_id, r.state) for r in rows} == {(t, "accepted") for t in ids}
        bad = requests.post(url + "/simulator/api/subscribe-tap", json={"openid": "o_sim_tap",
                                                                        "template_ids": ["<script>"]}).json()
        assert bad["ok"] is False
    finally:
        server.shutdown()
        emu_server.shutdown()
