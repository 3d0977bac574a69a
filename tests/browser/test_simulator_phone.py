"""The simulator on a phone (390x844, as an elderly resident's phone would show it), in
headless Chromium against the live test app with a small demo district: the page is the
phone (its input is in the first screen, not below the persona panel), 发送 stays on one
line, a menu tap shows nothing of its own in the chat (as in WeChat: only the account's
answer), and the personas sit behind a button that opens their list. Screenshots go to
artifacts/simulator/.

Skipped with a reason when /usr/bin/chromium or Python Playwright is missing.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import pytest

from bot.app import create_app
from tests.browser.support import NEEDS_CHROMIUM, launch, sync_api
from tests.test_simulator import serve

SHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "simulator"
PHONE = {"width": 390, "height": 844}

pytestmark = [
    NEEDS_CHROMIUM,
    pytest.mark.timeout(300),
]


@pytest.fixture
def simulator_url(svc):
    from demo import district

    with svc.db.transaction() as s:
        district.seed(s, now=datetime.now(timezone.utc), pii_key=svc.config.pii_key, volunteers=20)
    server, url = serve(create_app(config=replace(svc.config, env="development"), services=svc))
    yield url + "/simulator/"
    server.shutdown()


@pytest.fixture
def phone(simulator_url):
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as p:
        browser = launch(p)
        page = browser.new_page(viewport=PHONE, device_scale_factor=1, is_mobile=True, has_touch=True)
        page.goto(simulator_url)
        page.wait_for_selector("body[data-ready=yes]")
        yield page
        browser.close()


def in_first_screen(page, selector: str) -> bool:
    box = page.locator(selector).bounding_box()
    return box is not None and box["y"] >= 0 and box["y"] + box["height"] <= PHONE["height"] \
        and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"]


def test_on_a_phone_the_simulator_is_the_phone(phone):
    page = phone
    page.screenshot(path=str(SHOTS / "phone-first-screen.png"))
    # The persona panel does not push the phone down: the chat's input is in the first screen.
    assert page.locator("#persona-select").is_hidden()
    page.click("#mode-toggle")  # to the keyboard
    assert page.locator("#msg-input").is_visible() and in_first_screen(page, "#msg-input")
    assert in_first_screen(page, "#send-btn")
    # 发送 is one line: its text lays out as a single line box, no taller than the font's line.
    lines, text_height, font = page.eval_on_selector("#send-btn", """b => {
        const r = document.createRange(); r.selectNodeContents(b);
        return [r.getClientRects().length, r.getBoundingClientRect().height,
                parseFloat(getComputedStyle(b).fontSize)];
    }""")
    assert lines == 1 and text_height < 1.8 * font, ("发送 wraps", lines, text_height, font)
    page.screenshot(path=str(SHOTS / "phone-keyboard.png"))

    # A menu tap is an event: the chat shows the account's answer, nothing of the tap itself.
    page.click("#mode-toggle")  # back to the menu
    before = page.locator("#chat .msg").count()
    with page.expect_response(lambda r: r.url.endswith("/simulator/api/send")):
        page.click(".menu-btn:text-is('居民服务')")
        page.click(".sub-btn:text-is('预约志愿服务')")
    page.wait_for_timeout(200)
    assert page.locator("#chat .msg.me").count() == 0, page.locator("#chat").inner_text()
    assert page.locator("#chat .bubble.event").count() == 0
    assert "点击菜单" not in page.locator("#chat").inner_text()
    assert page.locator("#chat .msg.bot").count() == before + 1
    page.screenshot(path=str(SHOTS / "phone-after-a-menu-tap.png"))

    # The personas are behind a button; it opens their list, and picking one closes it.
    assert page.locator("#personas-btn").is_visible() and in_first_screen(page, "#personas-btn")
    page.click("#personas-btn")
    assert page.locator("#persona-select").is_visible()
    assert page.locator("#personas-btn").get_attribute("aria-expanded") == "true"
    page.screenshot(path=str(SHOTS / "phone-personas-open.png"))
    assert page.locator("#persona-select option").count() >= 3
    page.select_option("#persona-select", "o_demo_vol_001")
    assert page.locator("#persona-select").is_hidden()
    assert "志愿者" in page.locator("#persona-badge").inner_text()


def test_from_700_px_the_personas_sit_beside_the_phone(phone):
    page = phone
    page.set_viewport_size({"width": 1000, "height": 800})
    assert page.locator("#persona-select").is_visible() and page.locator("#personas-btn").is_hidden()
    page.screenshot(path=str(SHOTS / "desktop.png"))
