"""Revising the needs menu in a real headless Chromium against the live test app: a brigade
coordinator drafts the next version beside the unmet needs (adds a sub-category, renames
one, retires one), previews it as the chat shows it, and publishes it from a date; the
version in use changes only on that date, and an order open on the retired item keeps it.
Screenshots go to artifacts/needs/.

Skipped with a reason when /usr/bin/chromium or Python Playwright is missing.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import select

from rules import orders as order_rules
from rules import unmet
from store.models import CatalogVersion, Order
from tests.browser.support import NEEDS_CHROMIUM, launch, sync_api
from tests.browser.test_console import login
from tests.seeds import apply

SHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "needs"

pytestmark = [
    NEEDS_CHROMIUM,
    pytest.mark.timeout(300),
]


def test_draft_preview_and_publish_a_revision(base_url, svc):
    apply(svc, ["console_world"])
    now = datetime.now(timezone.utc)
    with svc.db.transaction() as s:
        unmet.record(s, kind="search", text="修自行车", now=now)
        open_order = s.scalar(select(Order.id).where(Order.sub_code == "08-01", Order.status == "submitted"))
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as p:
        browser = launch(p)
        pg = browser.new_context(viewport={"width": 1280, "height": 900}, locale="zh-CN").new_page()
        pg.set_default_timeout(15_000)
        login(pg, base_url, "admin")
        pg.click("header nav a:has-text('需求库')")
        pg.click("a:has-text('需求菜单修订')")
        assert "修自行车" in pg.inner_text("aside")  # the unmet needs beside the draft
        pg.click("button:has-text('起草下一版')")
        pg.wait_for_selector(".flash")

        pg.select_option("#add-form select[name=category]", label="便民维修")
        pg.fill("#add-form input[name=name]", "自行车维修")
        pg.fill("#add-form input[name=description]", "自行车、电动车简单修理")
        pg.fill("#add-form input[name=keywords]", "自行车，电动车，补胎")
        pg.click("#add-form button[type=submit]")
        assert "已新增" in pg.inner_text(".flash")
        pg.select_option("#rename-form select[name=code]", value="05-01")
        pg.fill("#rename-form input[name=name]", "居家探望")
        pg.click("#rename-form button[type=submit]")
        pg.select_option("#retire-form select[name=code]", value="08-01")
        pg.click("#retire-form button[type=submit]")
        changes = pg.inner_text("#changes")
        assert "新增" in changes and "自行车维修" in changes and "下架 08-01" in changes and "→ 居家探望" in changes
        pg.screenshot(path=str(SHOTS / "01-draft.png"), full_page=True)

        pg.click("#preview-link")
        previews = pg.inner_text("main")
        assert "请选择服务类别（回复序号）" in previews and "自行车维修（自行车、电动车简单修理）" in previews
        assert "水电维修" not in previews
        pg.screenshot(path=str(SHOTS / "02-preview.png"), full_page=True)
        pg.click("a:has-text('返回草稿')")

        day = (now + timedelta(days=3)).astimezone(order_rules.CHINA).date()
        pg.fill("#publish-form input[name=effective_from]", day.isoformat())
        pg.click("#publish-form button[type=submit]")
        assert f"{day:%Y-%m-%d} 起生效" in pg.inner_text(".flash")
        pg.screenshot(path=str(SHOTS / "03-published.png"), full_page=True)
        browser.close()
    with svc.db.session() as s:
        version = s.scalar(select(CatalogVersion).order_by(CatalogVersion.id.desc()))
        assert version.effective_from is not None
        assert order_rules.catalog_at(s, now).sub("08-01") is not None  # not yet
        later = order_rules.catalog_at(s, version.effective_from + timedelta(minutes=1))
        assert later.sub("08-01") is None and later.sub("05-01").name == "居家探望"
        order = s.get(Order, open_order)
        assert (order.sub_code, order.sub_name, order.status) == ("08-01", "水电维修", "submitted")
