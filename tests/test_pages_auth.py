"""Who is asking, on the pages at /m: WeChat's web OAuth against the emulator (authorize →
single-use code → openid → signed cookie), and every way it can go wrong answered with a
page offering to start again (never a 500): a replayed or unknown code, a state that does
not match, a missing or tampered cookie. Plus the JS-SDK ticket, shared in Redis."""

from __future__ import annotations

import re
import time
from urllib.parse import parse_qs, urlparse

import requests
from itsdangerous import TimestampSigner, URLSafeTimedSerializer

from pages import web
from tests.pages_support import open_as
from tests.seeds import apply

FRESH = "o_pages_stranger"


def test_oauth_round_trip_signs_in_and_lands_on_the_page(m, emulator):
    http, resp = open_as(emulator, m, FRESH, "/m/records")
    assert resp.status_code == 200 and resp.url.split("#")[0] == m + "/m/records"
    hops = [urlparse(r.headers["Location"]).path for r in resp.history]
    assert hops[:4] == ["/m/records", "/m/auth/start", "/connect/oauth2/authorize", "/m/auth/callback"]
    cookie = next(c for c in http.cookies if c.name == "volbot_m")
    assert cookie.path == "/m" and cookie.has_nonstandard_attr("HttpOnly")
    assert emulator.stats()["oauth_exchanges"] == 1
    again = http.get(m + "/m/records", timeout=10, allow_redirects=False)
    assert again.status_code == 200  # the cookie is enough now: no second round trip


def _code_for(emulator, m, openid):
    """Walk the flow by hand up to WeChat's redirect back: (session, callback URL)."""
    http = requests.Session()
    start = http.get(m + "/m/auth/start", params={"next": "/m/"}, allow_redirects=False, timeout=10)
    authorize = start.headers["Location"]
    assert authorize.startswith(emulator.url + "/connect/oauth2/authorize?") and "scope=snsapi_base" in authorize
    assert authorize.endswith("#wechat_redirect")
    http.cookies.set("emulator_wx_openid", openid)
    back = http.get(authorize.split("#")[0], allow_redirects=False, timeout=10)
    return http, back.headers["Location"]


def test_replayed_code_is_refused_with_a_page_to_start_again(m, emulator):
    http, callback = _code_for(emulator, m, FRESH)
    first = http.get(callback, allow_redirects=False, timeout=10)
    assert first.status_code == 302
    other = requests.Session()  # an attacker replaying the link elsewhere has no state cookie
    replay = other.get(callback, allow_redirects=False, timeout=10)
    assert replay.status_code == 400 and "重新进入" in replay.text
    http2, callback2 = _code_for(emulator, m, FRESH)
    code = parse_qs(urlparse(callback2).query)["code"][0]
    ok = http2.get(callback2, allow_redirects=False, timeout=10)
    assert ok.status_code == 302
    # The same code again, with a fresh matching state: WeChat says 40163 (code been used).
    http3 = requests.Session()
    start = http3.get(m + "/m/auth/start", allow_redirects=False, timeout=10)
    state = parse_qs(urlparse(start.headers["Location"].split("#")[0]).query)["state"][0]
    used = http3.get(m + "/m/auth/callback", params={"code": code, "state": state}, allow_redirects=False, timeout=10)
    assert used.status_code == 400 and "已经用过" in used.text and "重新进入" in used.text
    assert "volbot_m" not in used.cookies
    errors = emulator.stats()["errors"]
    assert errors.get("oauth_access_token:40163") == 1


def test_unknown_or_expired_code_and_state_mismatch(m, emulator):
    http = requests.Session()
    start = http.get(m + "/m/auth/start", allow_redirects=False, timeout=10)
    state = parse_qs(urlparse(start.headers["Location"].split("#")[0]).query)["state"][0]
    wrong = http.get(m + "/m/auth/callback", params={"code": "nonsense", "state": state}, timeout=10)
    assert wrong.status_code == 400 and "过期或无效" in wrong.text
    assert emulator.stats()["errors"].get("oauth_access_token:40029") == 1
    http, callback = _code_for(emulator, m, FRESH)
    tampered = re.sub(r"state=[^&]+", "state=forged", callback)
    refused = http.get(tampered, allow_redirects=False, timeout=10)
    assert refused.status_code == 400 and "不是从本页发起" in refused.text
    emulator.admin("clock", advance=301)  # a code lives five minutes
    late = http.get(callback, allow_redirects=False, timeout=10)
    assert late.status_code == 400 and "过期或无效" in late.text


def test_tampered_expired_and_missing_cookies(m, emulator, svc):
    apply(svc, ["console_world"])
    http, _ = open_as(emulator, m, "o_DF_vol")
    value = http.cookies.get("volbot_m", path="/m")
    forged = requests.Session()
    forged.cookies.set("volbot_m", value[:-3] + ("AAA" if not value.endswith("AAA") else "BBB"), path="/m")
    page = forged.get(m + "/m/records", allow_redirects=False, timeout=10)
    assert page.status_code == 403 and "重新进入" in page.text and "DF甲" not in page.text
    # A POST without any cookie changes nothing and says so.
    bare = requests.post(m + "/m/bus/subscribe", data={"community": "1"}, allow_redirects=False, timeout=10)
    assert bare.status_code == 403 and "重新进入" in bare.text
    # Past the cookie's life (a week): refused the same way, as expired.
    old = URLSafeTimedSerializer(svc.config.secret_key, salt=web.SALT, signer=_WeekOld).dumps({"o": "o_DF_vol"})
    stale = requests.Session()
    stale.cookies.set("volbot_m", old, path="/m")
    page = stale.get(m + "/m/records", allow_redirects=False, timeout=10)
    assert page.status_code == 403 and "已过期" in page.text


class _WeekOld(TimestampSigner):
    def get_timestamp(self) -> int:
        return int(time.time()) - web.SESSION_MAX_AGE - 60


def test_next_never_leaves_the_pages(m, emulator):
    for target in ("https://evil.example/", "//evil.example/m/", "/console/", "/m/\\evil"):
        resp = requests.get(m + "/m/auth/start", params={"next": target}, allow_redirects=False, timeout=10)
        authorize = resp.headers["Location"]
        http = requests.Session()
        http.cookies.update(resp.cookies)
        http.cookies.set("emulator_wx_openid", FRESH)
        back = http.get(authorize.split("#")[0], allow_redirects=False, timeout=10)
        landed = http.get(back.headers["Location"], allow_redirects=False, timeout=10)
        assert landed.headers["Location"] in ("/m/", m + "/m/"), target


def test_jsapi_ticket_is_fetched_once_and_signs_wx_config(m, emulator, svc):
    import hashlib

    http, _ = open_as(emulator, m, FRESH)
    page_url = m + "/m/nearby"
    configs = [http.get(m + "/m/jssdk.json", params={"url": page_url}, timeout=10).json() for _ in range(3)]
    assert emulator.stats()["jsapi_ticket_fetches"] == 1
    ticket = requests.get(emulator.url + "/_emulator/jsapi-ticket", timeout=10).json()["ticket"]
    for cfg in configs:
        raw = f"jsapi_ticket={ticket}&noncestr={cfg['nonceStr']}&timestamp={cfg['timestamp']}&url={page_url}"
        assert cfg["signature"] == hashlib.sha1(raw.encode()).hexdigest()
        assert "getLocation" in cfg["jsApiList"] and cfg["openTagList"] == ["wx-open-subscribe"]
    assert svc.redis.ttl(f"volbot:wechat:ticket:jsapi:{cfg['appId']}") > 6000
    other_site = http.get(m + "/m/jssdk.json", params={"url": "https://evil.example/m/"}, timeout=10)
    assert other_site.status_code == 400


def test_wechat_down_is_a_page_and_the_sdk_is_optional(m, emulator):
    http, callback = _code_for(emulator, m, FRESH)
    emulator.fault(endpoint="oauth_access_token", errcode=-1)  # 系统繁忙
    busy = http.get(callback, allow_redirects=False, timeout=10)
    assert busy.status_code == 503 and "稍后再试" in busy.text and "重新进入" in busy.text
    http, _ = open_as(emulator, m, FRESH)
    emulator.fault(endpoint="getticket", errcode=-1)
    sdk = http.get(m + "/m/jssdk.json", params={"url": m + "/m/nearby"}, timeout=10)
    assert sdk.status_code == 503 and sdk.json() == {"error": "unavailable"}
    assert http.get(m + "/m/nearby", timeout=10).status_code == 200  # the page works without it


def test_jsapi_ticket_cold_start_is_one_fetch_for_many_clients(emulator, svc):
    """Eight clients (as eight web workers would) ask at once on a cold Redis: one fetch,
    one ticket (the access token's lock-and-re-read, pushes.client.ApiClient._shared)."""
    import threading

    from pushes.client import ApiClient
    from tests.conftest import TEST_APPID

    clients = [ApiClient(TEST_APPID, svc.config.wechat_secret, svc.redis, api_base=emulator.base) for _ in range(8)]
    go, got = threading.Barrier(len(clients)), []

    def ask(client):
        go.wait()
        got.append(client.jsapi_ticket)

    threads = [threading.Thread(target=ask, args=(c,)) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(got) == 8 and len(set(got)) == 1
    assert emulator.stats()["jsapi_ticket_fetches"] == 1
    assert sum(c.fetches for c in clients) == 2  # one access token, one ticket
