"""What every browser test shares: Debian's Chromium and how it is started (no background
networking: this machine's network is closed, and Chromium would keep knocking), the skip
with a reason where it or Playwright is missing."""

from __future__ import annotations

from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run"]

NEEDS_CHROMIUM = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"no Chromium at {CHROMIUM} "
                                    "(apt-get install -y chromium fonts-wqy-microhei)")
sync_api = pytest.importorskip("playwright.sync_api", reason="Python Playwright is not installed")


def launch(playwright):
    """Chromium, headless, as the tests start it."""
    return playwright.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
