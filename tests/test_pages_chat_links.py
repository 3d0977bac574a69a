"""From the chat to the pages: long lists end with a link to their page when the site's
address is configured (PUBLIC_URL), and carry none without it."""

from __future__ import annotations

import pytest

from tests.seeds import apply

PAGES = "https://vol.example.cn/m"


@pytest.fixture
def linked(svc):
    before = svc.settings.pages_url
    svc.settings.pages_url = PAGES
    yield svc
    svc.settings.pages_url = before


def test_hours_bus_and_nearby_end_with_their_page(linked, wechat_plain):
    apply(linked, ["console_world", "bus_visits"])
    hours = wechat_plain.say("o_DF_vol", "我的时长")
    assert hours.rstrip().endswith(f'<a href="{PAGES}/records">全部记录和时间银行存折</a>')
    bus = wechat_plain.say("o_DF_vol", "巴士")
    assert f'<a href="{PAGES}/bus">' in bus
    near = wechat_plain.location("o_DF_vol", 36.7, 119.1)
    assert f'<a href="{PAGES}/nearby?lat=36.700000&lng=119.100000">' in near


def test_no_links_without_the_address(svc, wechat_plain):
    apply(svc, ["console_world"])
    assert "<a href" not in wechat_plain.say("o_DF_vol", "我的时长")
