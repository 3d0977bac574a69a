"""A phone revealed in the console in a real headless Chromium, at a phone's width: the
volunteer's page shows it masked with a reveal form, the reason is typed, the number comes
back once as a call link, and the page has no horizontal scroll. Screenshots go to
artifacts/console/.

Skipped with a reason when /usr/bin/chromium or Python Playwright is missing.
"""

from __future__ import annotations

import pytest
from sqlalchemy import select

from store.models import AuditLog, Volunteer
from tests.browser.support import NEEDS_CHROMIUM, launch, sync_api
from tests.browser.test_console import SHOTS, login, shot
from tests.console_support import one
from tests.seeds import apply

pytestmark = [
    NEEDS_CHROMIUM,
    pytest.mark.timeout(120),
]


def test_reveal_a_phone_on_a_phone(base_url, svc):
    apply(svc, ["console_world"])
    SHOTS.mkdir(parents=True, exist_ok=True)
    vid = one(svc, select(Volunteer.id).where(Volunteer.number == "KW2026000100"))
    with sync_api.sync_playwright() as p:
        browser = launch(p)
        try:
            pg = browser.new_context(viewport={"width": 390, "height": 844}, locale="zh-CN").new_page()
            pg.set_default_timeout(15_000)
            login(pg, base_url, "df_lead")
            pg.goto(f"{base_url}/console/volunteers/{vid}")
            assert "139****1334" in pg.inner_text("dl.facts") and "13901001334" not in pg.content()
            assert pg.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
            button = pg.locator("form.reveal button")
            assert button.bounding_box()["height"] >= 44
            shot(pg, "19-volunteer-reveal-form-phone")
            pg.click("form.reveal button")  # no reason: the browser asks for one (required)
            assert pg.url.endswith(f"/console/volunteers/{vid}")
            pg.fill("form.reveal input[name=reason]", "电话确认周末活动")
            pg.click("form.reveal button")
            pg.wait_for_selector(".revealed")
            assert pg.inner_text(".revealed") == "13901001334"
            assert pg.get_attribute(".revealed a", "href") == "tel:13901001334"
            assert pg.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
            shot(pg, "20-phone-revealed")
            pg.click("text=返回")
            assert "13901001334" not in pg.content()
        finally:
            browser.close()
    entry = one(svc, select(AuditLog).where(AuditLog.action == "phone.reveal"))
    assert entry.reason == "电话确认周末活动" and entry.entity_id == str(vid)
