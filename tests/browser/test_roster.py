"""The shift roster (点名与签到台) in headless Chromium at a phone's width (390 px): a
coordinator finds a volunteer by the last 4 digits of their phone and checks them in at the
desk, then, after the shift, marks another absent; buttons are at least 44 px and the page
does not scroll sideways. Screenshots go to artifacts/console/roster-*.png.

Skipped with a reason when /usr/bin/chromium or Python Playwright is missing.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from rules import activities as acts
from store.models import Activity, Attendance, Shift, SignUp, Volunteer
from tests.browser.support import NEEDS_CHROMIUM, launch, sync_api
from tests.console_support import one
from tests.seeds import apply
from tests.seeds.console import PASSWORD

SHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "console"

pytestmark = [
    NEEDS_CHROMIUM,
    pytest.mark.timeout(300),
]



def test_roster_on_a_phone(base_url, svc):
    apply(svc, ["console_world"])
    SHOTS.mkdir(parents=True, exist_ok=True)
    with svc.db.transaction() as s:
        shift = s.scalar(select(Shift).join(Shift.activity).where(Activity.title == "DF周末课堂"))
        for number in ("KW2026000100", "KW2026000101"):  # DF甲 (phone …1334), DF乙
            acts.sign_up(s, s.scalar(select(Volunteer).where(Volunteer.number == number)), shift.id, svc.clock.now())
        sid, start, end = shift.id, shift.starts_at, shift.ends_at
    svc.clock.advance(seconds=(start - svc.clock.now()).total_seconds() + 120)  # the shift has begun

    with sync_api.sync_playwright() as p:
        browser = launch(p)
        try:
            context = browser.new_context(viewport={"width": 390, "height": 844}, locale="zh-CN")
            pg = context.new_page()
            pg.set_default_timeout(15_000)
            def sign_in():
                pg.goto(base_url + f"/console/shifts/{sid}/roster")
                pg.fill("input[name=username]", "df_lead")
                pg.fill("input[name=password]", PASSWORD)
                pg.click("button[type=submit]")
                pg.wait_for_url(f"**/console/shifts/{sid}/roster")

            sign_in()
            pg.screenshot(path=str(SHOTS / "roster-1-phone.png"), full_page=True)
            assert pg.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")

            # At the desk: the last 4 digits of DF甲's phone find them, masked.
            pg.fill("input[name=q]", "1334")
            pg.click(".roster-desk button[type=submit]")
            desk = pg.locator(".roster-desk ul.roster li")
            assert desk.count() == 1 and "DF甲" in desk.inner_text() and "13901001334" not in pg.content()
            box = desk.locator("button").bounding_box()
            assert box["height"] >= 44 and box["width"] >= 44
            desk.locator("button", has_text="签到").click()
            pg.wait_for_selector(".flash")
            assert "已签到" in pg.inner_text(".flash")
            pg.screenshot(path=str(SHOTS / "roster-2-desk.png"), full_page=True)

            # After the shift: DF乙 never came and is marked absent; the badge shows it.
            # Hours pass on the test clock, past the console's idle timeout: sign in again.
            svc.clock.advance(seconds=(end - start).total_seconds())
            sign_in()
            yi = one(svc, select(SignUp.id).join(Volunteer, Volunteer.id == SignUp.volunteer_id)
                     .where(SignUp.shift_id == sid, Volunteer.name == "DF乙"))
            row = pg.locator(f"li[data-signup='{yi}']")
            row.locator("button[value=absent]").click()
            pg.wait_for_selector(".flash")
            row = pg.locator(f"li[data-signup='{yi}']")
            assert "缺席" in row.locator(".badge").inner_text()
            assert row.locator("button[value=absent]").get_attribute("aria-pressed") == "true"
            assert pg.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
            pg.screenshot(path=str(SHOTS / "roster-3-marked.png"), full_page=True)
        finally:
            browser.close()
    assert one(svc, select(SignUp.attendance).where(SignUp.id == yi)) == "absent"
    assert one(svc, select(Attendance.in_method).where(Attendance.shift_id == sid)) == "desk"
