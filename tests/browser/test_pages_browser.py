"""The pages at /m in a real headless Chromium at a phone's size (390×844), signed in through
the emulator's OAuth as WeChat's in-app browser would be: a volunteer, a resident and a
stranger walk every page; axe-core (served from tests/fixtures, no internet) checks each
one for WCAG 2.1 A/AA problems; type is large by default and the toggle works; every
control is at least 44 px high; nobody sees another's data. Then the simulator opens a
page from its custom menu inside the phone, with its fake JS-SDK (signature checked
against the emulator's ticket). Screenshots go to artifacts/pages/.

Skipped with a reason when /usr/bin/chromium or Python Playwright is missing.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import quote

import pytest
from sqlalchemy import select

from bot.app import create_app
from store.models import Order
from tests.browser.support import NEEDS_CHROMIUM, launch, sync_api
from tests.seeds import apply
from tests.test_simulator import serve

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "artifacts" / "pages"
AXE = (ROOT / "tests" / "fixtures" / "axe-core" / "axe.min.js").read_text(encoding="utf-8")
PHONE = {"width": 390, "height": 844}
WCAG = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]

pytestmark = [
    NEEDS_CHROMIUM,
    pytest.mark.timeout(300),
]


@pytest.fixture(scope="module")
def browser():
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as p:
        b = launch(p)
        yield b
        b.close()


class Phone:
    """One person's in-app browser: a fresh context signed in as `openid`."""

    def __init__(self, browser, base: str, emulator, openid: str | None):
        self.base = base
        self.context = browser.new_context(viewport=PHONE, device_scale_factor=1, is_mobile=True, has_touch=True,
                                           locale="zh-CN")
        self.page = self.context.new_page()
        self.page.set_default_timeout(15_000)
        self.errors: list[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        if openid:
            target = f"{base}/m/auth/start?next=/m/"
            self.page.goto(f"{emulator.url}/_emulator/webview?openid={openid}&url={quote(target, safe='')}")
            self.page.wait_for_url(lambda u: u.split("#")[0] == base + "/m/")

    def open(self, path: str):
        resp = self.page.goto(self.base + path)
        return resp

    def check(self, name: str) -> None:
        """axe-core on the page as shown (injected over CDP: a strict CSP would not stop it),
        every control ≥ 44 px high, and a screenshot."""
        self.page.evaluate(AXE)
        result = self.page.evaluate("tags => axe.run(document, {runOnly: {type: 'tag', values: tags}})", WCAG)
        problems = [(v["id"], v["impact"], [n["target"] for n in v["nodes"]][:3]) for v in result["violations"]]
        assert problems == [], (name, problems)
        small = self.page.evaluate("""() => [...document.querySelectorAll(
              'main button, main .button, main .main-action, main select, main input:not([type=hidden]), main textarea,'
              + ' main .tiles a, main .years a, main .cards a.row, .stars span, header a')]
            .filter(e => e.offsetParent !== null && !(e.type === 'radio'))
            .map(e => [e.tagName + '.' + e.className + ' ' + (e.textContent || '').trim().slice(0, 12),
                       e.getBoundingClientRect().height])
            .filter(([, h]) => h < 44)""")
        assert small == [], (name, small)
        self.page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def world(m, emulator, svc):
    apply(svc, ["console_world", "bus_visits"])
    return m


def test_volunteer_walks_records_activities_and_certificates(browser, world, emulator, svc):
    vol = Phone(browser, world, emulator, "o_DF_vol")
    page = vol.page
    assert page.evaluate("getComputedStyle(document.documentElement).fontSize") == "22px"
    vol.check("01-volunteer-home")
    page.click("text=我的志愿记录")
    page.wait_for_url("**/m/records")
    assert page.locator("text=7.5小时").count() >= 1 and page.locator("progress").count() == 1
    vol.check("02-volunteer-records")
    with page.expect_navigation():  # the page comes back with its stylesheet loaded
        page.click("header .size")  # 标准字
    assert page.evaluate("getComputedStyle(document.documentElement).fontSize") == "18px"
    with page.expect_navigation():
        page.click("header .size")  # back to large type
    assert page.evaluate("getComputedStyle(document.documentElement).fontSize") == "22px"
    with page.expect_download() as download:
        page.click("text=下载")
    assert download.value.suggested_filename.endswith(".csv")
    vol.open("/m/activities")
    vol.check("03-volunteer-activities")
    page.locator("li", has_text="DF周末课堂").locator("button", has_text="报名").click()
    page.wait_for_url("**/m/activities/mine**")
    assert page.locator("text=报名成功").count() == 1
    vol.check("04-volunteer-my-shifts")
    page.click("text=取消报名")
    assert page.locator("text=已取消报名").count() == 1
    vol.open("/m/certificates")
    vol.check("05-volunteer-certificates")
    page.click("text=开具证明")
    page.wait_for_url("**/m/certificates/*")
    vol.check("06-volunteer-certificate")
    code = page.locator("dt:text('验证码') + dd").inner_text()
    assert vol.errors == []
    vol.close()
    anyone = Phone(browser, world, emulator, None)
    anyone.open("/m/verify")
    anyone.page.fill("#code", code.lower())
    anyone.page.click("button:text('核验')")
    anyone.page.wait_for_url("**/m/verify/*")
    assert anyone.page.locator("text=真实有效").count() == 1 and anyone.page.locator("text=D**").count() == 1
    anyone.check("07-anyone-verify")
    anyone.close()


def test_resident_rates_an_order_subscribes_and_finds_a_station(browser, world, emulator, svc):
    res = Phone(browser, world, emulator, "o_DF_res")
    page = res.page
    assert page.locator("text=我的志愿记录").count() == 0  # not a volunteer: no tile
    page.click("text=我的订单")
    res.check("10-resident-orders")
    with svc.db.session() as s:
        done = s.scalar(select(Order.number).where(Order.status == "completed", Order.follower.has(openid="o_DF_res")))
    page.click(f"a[href='/m/orders/{done}']")
    res.check("11-resident-order")
    page.click(".stars label:nth-child(5) span")
    page.fill("#comment", "准时，耐心")
    page.click("text=提交评价")
    assert page.locator("text=感谢您的评价").count() == 1
    res.check("12-resident-rated")
    res.open("/m/bus")
    res.check("13-resident-bus")
    page.click("text=订阅这个社区")
    assert page.locator("text=已订阅，").count() == 1
    res.open("/m/nearby?lat=36.7005&lng=119.1005")  # as the location button would submit it
    assert page.locator("svg.map circle").count() >= 2 and page.locator("text=DF志愿服务站").count() == 1
    res.check("14-resident-nearby")
    res.open("/m/family")
    res.check("15-resident-family")
    res.open("/m/notices")
    res.check("16-resident-notices")
    assert res.errors == []
    res.close()


def test_stranger_sees_nothing_of_theirs_and_bad_cookies_start_again(browser, world, emulator, svc):
    with svc.db.session() as s:
        theirs = s.scalar(select(Order.number).where(Order.follower.has(openid="o_DF_res")))
    who = Phone(browser, world, emulator, "o_stranger_0001")
    page = who.page
    who.open("/m/records")
    assert page.locator("text=您还不是注册志愿者").count() == 1
    who.check("20-stranger-records")
    who.open("/m/orders")
    assert page.locator("text=您还没有服务订单").count() == 1
    resp = who.open(f"/m/orders/{theirs}")
    assert resp.status == 404 and page.locator("text=找不到这条记录").count() == 1
    who.check("21-stranger-others-order")
    cookie = next(c for c in who.context.cookies() if c["name"] == "volbot_m")
    who.context.add_cookies([{**cookie, "value": cookie["value"][:-2] + "xx"}])
    resp = who.open("/m/records")
    assert resp.status == 403 and page.locator("a.main-action:text('重新进入')").count() == 1
    who.check("22-stranger-tampered-cookie")
    page.click("a.main-action:text('重新进入')")  # starts again through OAuth and lands on a page
    page.wait_for_url(lambda u: u.startswith(world + "/m/") and "/auth/" not in u)
    assert page.locator("a.main-action:text('重新进入')").count() == 0
    who.close()


def test_simulator_opens_a_page_in_the_phone_with_the_fake_jssdk(browser, svc, emulator):
    from demo import district

    with svc.db.transaction() as s:
        district.seed(s, now=datetime.now(timezone.utc), pii_key=svc.config.pii_key, volunteers=20)
    config = replace(svc.config, env="development", wechat_api_base=emulator.base)
    server, url = serve(create_app(config=config, services=svc))
    try:
        context = browser.new_context(viewport=PHONE, device_scale_factor=1, is_mobile=True, has_touch=True,
                                      locale="zh-CN")
        page = context.new_page()
        page.set_default_timeout(15_000)
        page.goto(url + "/simulator/")
        page.wait_for_selector("body[data-ready=yes]")
        page.click("#personas-btn")
        page.select_option("#persona-select", "o_demo_vol_002")
        page.click("#menu button:text('志愿者')")
        page.click("#submenu button:text('我的志愿记录')")
        frame = page.frame_locator("#webview-frame")
        frame.locator("h1:text('我的志愿记录')").wait_for()
        assert frame.locator("text=志愿者编号").count() == 1
        page.screenshot(path=str(SHOTS / "30-simulator-records.png"))
        page.click("#webview-close")
        page.click("#menu button:text('居民服务')")
        page.click("#submenu button:text('订单进度（网页）')")
        frame.locator("h1:text('我的订单')").wait_for()
        # 附近 with the fake JS-SDK: wx.config is checked against the emulator's ticket.
        page.locator("#webview-frame").evaluate("f => { f.contentWindow.location.href = '/m/nearby'; }")
        frame.locator("button:text('用我现在的位置')").click()
        frame.locator("h2:text('您的位置附近')").wait_for()
        assert frame.locator("svg.map circle.me").count() == 1
        page.locator(".system", has_text="JS-SDK 签名校验通过").wait_for()
        page.screenshot(path=str(SHOTS / "31-simulator-nearby.png"))
        context.close()
    finally:
        server.shutdown()
