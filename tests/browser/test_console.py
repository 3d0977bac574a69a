"""The coordinators' console in a real headless Chromium (Debian's `chromium`, driven by
Python Playwright) against the live test app: log in, approve hours, assign an order,
schedule a bus visit and watch the push worker (sending to the WeChat emulator) take its
progress bar to 100%, download an export and open it. Every page is screenshotted (desktop
and phone widths) into artifacts/console/.

Skipped with a reason when /usr/bin/chromium or Python Playwright is missing.
"""

from __future__ import annotations

import io
import time
from dataclasses import replace
from pathlib import Path

import pytest
import requests
from openpyxl import load_workbook
from sqlalchemy import func, select

from pushes import scheduler
from rules import notices
from store.models import Follower, HourRecord, Offer, Order, Volunteer
from store.models.activities import Activity
from tests.browser.support import NEEDS_CHROMIUM, launch, sync_api
from tests.console_support import one
from tests.pushes_fixtures import FAST, drain
from tests.seeds import apply
from tests.seeds.console import PASSWORD

SHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "console"

pytestmark = [
    NEEDS_CHROMIUM,
    pytest.mark.timeout(300),
]


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = launch(p)
        yield b
        b.close()


@pytest.fixture
def page(browser, base_url, svc, dispatcher, emulator):
    apply(svc, ["console_world", "console_bus_subscribers"])
    SHOTS.mkdir(parents=True, exist_ok=True)
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True, locale="zh-CN")
    pg = context.new_page()
    pg.set_default_timeout(15_000)
    watch_csp(pg)
    yield pg
    context.close()


def watch_csp(pg) -> None:
    """Collect what the Content-Security-Policy blocked on the page (`pg.csp_blocked`)."""
    pg.csp_blocked = []
    pg.on("console", lambda m: pg.csp_blocked.append(m.text) if "Content Security Policy" in m.text else None)


def shot(pg, name: str) -> None:
    pg.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def login(pg, base_url, username="dg_lead"):
    pg.goto(base_url + "/console/")
    assert "/console/login" in pg.url
    shot(pg, "00-login")
    pg.fill("input[name=username]", username)
    pg.fill("input[name=password]", PASSWORD)
    pg.click("button[type=submit]")
    pg.wait_for_url(base_url + "/console/")



def run_push_worker_until(pg, svc, percent: str, timeout: float = 60) -> None:
    """Run the scheduler and the RQ worker (in this thread: RQ installs signal handlers)
    pass after pass, as `volbot demo` does, until the page's bar shows `percent`."""
    deadline = time.monotonic() + timeout
    while pg.get_attribute(".progress", "data-percent") != percent:
        assert time.monotonic() < deadline, "the fan-out did not finish"
        scheduler.run_pass(svc, FAST)
        drain(svc)
        pg.wait_for_timeout(500)  # the page polls its JSON endpoint every second


def test_console_in_chromium(page, base_url, svc, emulator):
    pg = page
    login(pg, base_url)
    assert "东关分队长" in pg.inner_text("header")
    shot(pg, "01-dashboard")

    # approve two pending hour records of 东风 at once
    pg.goto(base_url + "/console/hours")
    shot(pg, "02-hours")
    pending_before = one(svc, select(func.count()).select_from(HourRecord).where(HourRecord.state == "pending"))
    ids = [one(svc, select(HourRecord.id).where(HourRecord.source_ref == f"DF:p{i}")) for i in range(2)]
    for rid in ids:
        pg.check(f"input[name=ids][value='{rid}']")
    pg.click("button[name=decision][value=approve]")
    pg.wait_for_selector(".flash")
    assert "已通过 2 条记录" in pg.inner_text(".flash")
    shot(pg, "03-hours-approved")
    assert one(svc, select(func.count()).select_from(HourRecord).where(HourRecord.state == "pending")) == pending_before - 2

    # assign an order to a candidate
    oid = one(svc, select(Order.id).where(Order.status == "submitted", Order.community_id.is_not(None)).order_by(Order.id))
    pg.goto(base_url + "/console/orders")
    shot(pg, "04-orders")
    pg.goto(f"{base_url}/console/orders/{oid}")
    pg.check("#assign input[name=volunteer_id] >> nth=0")
    pg.fill("#assign input[name=reason]", "就近安排")
    pg.click("#assign button[type=submit]")
    pg.wait_for_selector(".flash")
    assert "已将工单" in pg.inner_text(".flash")
    shot(pg, "05-order-assigned")
    assert one(svc, select(func.count()).select_from(Offer).where(Offer.order_id == oid)) == 1

    # schedule a bus visit and watch the fan-out reach 100%
    pg.goto(base_url + "/console/bus")
    pg.select_option("#schedule select[name=community_id]", label="东风社区")
    pg.fill("#schedule input[name=day]", "2030-05-04")
    pg.fill("#schedule input[name=start]", "09:00")
    pg.fill("#schedule input[name=end]", "11:30")
    pg.fill("#schedule input[name=place]", "东风社区文化广场")
    pg.check("#schedule input[name=services][value=health]")
    pg.check("#schedule input[name=services][value=lawyer]")
    shot(pg, "06-bus-form")
    pg.click("#schedule button[type=submit]")
    # (a selector, not wait_for_function: the page's CSP forbids the eval that one needs)
    pg.wait_for_selector(".progress[data-percent='0']")
    assert "0 / 10" in pg.inner_text(".progress-text")  # recorded, nothing sent yet
    shot(pg, "07-bus-progress-0")
    # Bus visits are subscribe notices: the subscribers tapped 允许 on WeChat's button.
    with svc.db.transaction() as s:
        subscribers = sorted(s.scalars(select(Follower.openid).where(Follower.openid.like("o_bus_df_%"))))
        for openid in subscribers:
            notices.record_consent(s, openid, "volbot-bus-visit", accepted=True, source="h5_popup",
                                   now=svc.clock.now())
    for openid in subscribers:
        emulator.admin("notice-consent", openid=openid, template_id="volbot-bus-visit", accept=True)
    run_push_worker_until(pg, svc, "100")
    assert "10 / 10（100%）" in pg.inner_text(".progress-text")
    shot(pg, "08-bus-progress-100")
    sent = requests.get(emulator.url + "/_emulator/notices", timeout=5).json()
    assert len([n for n in sent if n["openid"].startswith("o_bus_df_")]) == 10

    # reports: charts, then download the Excel export and open it
    pg.goto(base_url + "/console/reports")
    assert pg.locator("svg").count() >= 4
    shot(pg, "08b-reports")
    with pg.expect_download() as info:
        pg.click("#report-hours a:has-text('导出 Excel')")
    download = info.value
    path = SHOTS / "hours-export.xlsx"
    download.save_as(str(path))
    rows = list(load_workbook(io.BytesIO(path.read_bytes())).active.iter_rows(values_only=True))
    assert rows[1][0] == "队伍" and any(r[0] == "东风社区小队" for r in rows[2:])

    # the other pages, for the record
    vid = one(svc, select(Volunteer.id).where(Volunteer.number == "KW2026000100"))
    aid = one(svc, select(Activity.id).where(Activity.title == "DF周末课堂"))
    for name, path in (("09-volunteers", "/console/volunteers?q=1334"), ("10-volunteer", f"/console/volunteers/{vid}"),
                       ("11-activities", "/console/activities"), ("12-activity", f"/console/activities/{aid}"),
                       ("13-places", "/console/places"), ("14-audit", "/console/audit"),
                       ("15-hours-new", "/console/hours/new"), ("16-certificate", f"/console/volunteers/{vid}/certificate")):
        pg.goto(base_url + path)
        assert pg.locator("header.top").count() == 1, path
        shot(pg, name)
    assert "139****1334" in pg.goto(base_url + "/console/volunteers?q=1334").text()

    # usable on a phone: the dashboard at 390 px wide has no horizontal scroll
    pg.set_viewport_size({"width": 390, "height": 844})
    pg.goto(base_url + "/console/")
    pg.wait_for_selector(".progress[data-percent='100']")
    pg.wait_for_timeout(600)  # the bar's width transition
    assert pg.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
    shot(pg, "17-dashboard-phone")
    pg.goto(base_url + "/console/hours?state=approved")
    shot(pg, "18-hours-phone")
    assert pg.csp_blocked == []  # no page needed an inline script or style


def test_enrol_a_second_factor_in_chromium(browser, base_url, svc, monkeypatch):
    """A brigade account must enrol: the QR code shows (served by the app), the secret typed
    into an authenticator (here pyotp) gives the code, the recovery codes are shown once, and
    the next login asks for a code."""
    import pyotp

    apply(svc, ["console_logins"])
    monkeypatch.setattr(svc, "config", replace(svc.config, console_2fa_roles="brigade"))
    SHOTS.mkdir(parents=True, exist_ok=True)
    context = browser.new_context(viewport={"width": 390, "height": 844}, locale="zh-CN")
    pg = context.new_page()
    pg.set_default_timeout(15_000)
    watch_csp(pg)
    try:
        pg.goto(base_url + "/console/")
        pg.fill("input[name=username]", "admin")
        pg.fill("input[name=password]", PASSWORD)
        pg.click("button[type=submit]")
        pg.wait_for_url(base_url + "/console/account/2fa")
        assert "必须开启两步验证" in pg.inner_text("main")
        assert pg.locator("img.qr").evaluate("img => img.complete && img.naturalWidth") > 100
        shot(pg, "20-2fa-enrol-phone")
        secret = pg.inner_text("#secret").replace(" ", "")
        pg.fill("#enrol input[name=code]", pyotp.TOTP(secret).at(svc.clock.timestamp()))
        pg.click("#enrol button[type=submit]")
        pg.wait_for_selector("#recovery-codes")
        assert pg.locator("#recovery-codes li").count() == 10
        shot(pg, "21-2fa-recovery-codes-phone")
        pg.click("#recovery-codes a")
        pg.wait_for_url(base_url + "/console/")
        pg.click("header .who button[type=submit]")  # 退出
        pg.wait_for_url(base_url + "/console/login")
        pg.fill("input[name=username]", "admin")
        pg.fill("input[name=password]", PASSWORD)
        pg.click("button[type=submit]")
        pg.wait_for_url("**/console/login/2fa*")
        shot(pg, "22-2fa-login-phone")
        svc.clock.advance(seconds=30)  # the enrolment's code is spent; the next one
        pg.fill("input[name=code]", pyotp.TOTP(secret).at(svc.clock.timestamp()))
        pg.click("button[type=submit]")
        pg.wait_for_url(base_url + "/console/")
        pg.goto(base_url + "/console/account/sessions")
        assert "当前设备" in pg.inner_text("#sessions")
        shot(pg, "23-sessions-phone")
        assert pg.csp_blocked == []
    finally:
        context.close()
