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
    listing = wechat_plain.say("o_DF_vol", "活动报名")
    if "请选择要报名的时段" not in listing:  # the first question is which activities to see
        listing = wechat_plain.say("o_DF_vol", "1")
    assert f'<a href="{PAGES}/activities">' in listing, listing
    wechat_plain.say("o_DF_vol", "取消")
    _sign_up(linked, "KW2026000100", "DF周末课堂")  # DF甲, o_DF_vol
    mine = wechat_plain.say("o_DF_vol", "我的报名")
    assert "您的报名如下" in mine and f'<a href="{PAGES}/activities/mine">我的报名（网页）</a>' in mine, mine
    wechat_plain.say("o_DF_vol", "取消")
    orders = wechat_plain.say("o_DF_res", "我的订单")
    assert f'<a href="{PAGES}/orders">全部订单和进度（网页）</a>' in orders and "1." in orders


def _sign_up(svc, number: str, title: str) -> None:
    from sqlalchemy import select

    from rules import activities as acts
    from store.models import Activity, Shift, Volunteer

    with svc.db.transaction() as s:
        shift = s.scalar(select(Shift).join(Shift.activity).where(Activity.title == title))
        acts.sign_up(s, s.scalar(select(Volunteer).where(Volunteer.number == number)), shift.id, svc.clock.now())


def test_no_links_without_the_address(svc, wechat_plain):
    apply(svc, ["console_world"])
    assert "<a href" not in wechat_plain.say("o_DF_vol", "我的时长")


def test_public_url_and_tiles_settings_are_checked(tmp_path):
    from bot.config import ConfigError, load_config

    config = load_config(tmp_path, environ={"PUBLIC_URL": "https://vol.example.cn/"})
    assert config.pages_url == "https://vol.example.cn/m"
    assert load_config(tmp_path, environ={}).pages_url == ""
    for name, value in (("PUBLIC_URL", "vol.example.cn"), ("PUBLIC_URL", "https://a b"),
                        ("PAGES_MAP_TILES", "https://tiles.example/{z}/{x}.png"), ("PAGES_MAP_TILES", "ftp://t/{z}/{x}/{y}")):
        with pytest.raises(ConfigError, match=name):
            load_config(tmp_path, environ={name: value})


def test_svg_map_places_points_inside_and_tiles_cover_the_view():
    from pages.mapdraw import HEIGHT, WIDTH, Map

    points = [(36.70, 119.10), (36.72, 119.13), (36.69, 119.08)]
    view = Map(points)
    for lat, lng in points:
        x, y = view.place(lat, lng)
        assert 0 <= x <= WIDTH and 0 <= y <= HEIGHT
    west, east = view.place(36.70, 119.08)[0], view.place(36.70, 119.13)[0]
    north, south = view.place(36.72, 119.10)[1], view.place(36.69, 119.10)[1]
    assert west < east and north < south  # east is right, north is up
    tiles = view.tiles("https://t.example/{z}/{x}/{y}.png")
    assert tiles and all(t["href"].startswith("https://t.example/") for t in tiles)
    assert min(t["x"] for t in tiles) <= 0 and max(t["x"] + t["size"] for t in tiles) >= WIDTH
    assert min(t["y"] for t in tiles) <= 0 and max(t["y"] + t["size"] for t in tiles) >= HEIGHT
    assert Map(points).tiles("") == []
    one = Map([(36.7, 119.1)])  # a single point still gets a map around it
    assert one.place(36.7, 119.1) == (WIDTH / 2, HEIGHT / 2)
