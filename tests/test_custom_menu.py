"""The custom menu fits WeChat's limits, each click key routes to a journey, and the
checker catches every kind of mistake."""

from __future__ import annotations

import copy
import json

import pytest
from click.testing import CliRunner

from handlers import registry
from menus import custom_menu, main_menu

PAGES = "https://vol.example.cn/m"


@pytest.fixture(scope="module")
def menu():
    return custom_menu.load(pages_url=PAGES)


def test_shipped_menu_is_within_limits(menu):
    assert custom_menu.validate(menu) == []
    assert 1 <= len(menu["button"]) <= 3
    for b in menu["button"]:
        assert len(b["name"].encode()) <= 16
        assert 1 <= len(b["sub_button"]) <= 5
        for s in b["sub_button"]:
            assert len(s["name"].encode()) <= 60
            assert len(s["key"].encode()) <= 128 if s["type"] != "view" else len(s["url"]) <= 1024


def test_view_buttons_open_the_pages_or_are_left_out(menu):
    views = [s["url"] for b in menu["button"] for s in b["sub_button"] if s["type"] == "view"]
    assert views and all(u.startswith(PAGES + "/") for u in views)
    assert PAGES + "/records" in views
    bare = custom_menu.load()  # no PUBLIC_URL: no page buttons, still a valid menu
    assert custom_menu.validate(bare) == []
    assert not [s for b in bare["button"] for s in b["sub_button"] if s["type"] == "view"]
    assert custom_menu.click_keys(bare) == custom_menu.click_keys(menu)


def test_every_click_key_is_a_command_or_a_main_menu_item(menu):
    main_keys = {i.key for i in main_menu().items}
    for key in custom_menu.click_keys(menu):
        assert key in registry.commands or key in main_keys, key
    # The orders journeys this menu exists for are live.
    assert {"ORDER", "MY_ORDERS", "MENU"} <= set(registry.commands)


def test_each_click_key_answers_over_the_webhook(menu, wechat_plain):
    user = "o_menu_clicks"
    wechat_plain.event(user, "subscribe")
    for key in custom_menu.click_keys(menu):
        reply = wechat_plain.event(user, "CLICK", key)
        assert reply, key
        assert "没有看懂" not in reply, (key, reply)
        if key in registry.commands:
            assert "即将开放，敬请期待" not in reply, (key, reply)
    assert "请选择服务类别" in wechat_plain.event(user, "CLICK", "ORDER")


def broken(change) -> list[str]:
    data = copy.deepcopy(custom_menu.load())
    change(data)
    return custom_menu.validate(data)


def test_too_many_buttons_and_sub_buttons():
    assert broken(lambda d: d["button"].append(copy.deepcopy(d["button"][0]))) == [
        "the menu needs 1-3 buttons in `button`"]
    problems = broken(lambda d: d["button"][0]["sub_button"].extend([{"type": "click", "name": "x", "key": "K"}] * 6))
    assert problems == ["button 1 (居民服务): needs 1-5 sub-buttons"]
    assert broken(lambda d: d.update(button=[])) == ["the menu needs 1-3 buttons in `button`"]


def test_name_and_key_byte_limits():
    # 6 Chinese characters are 18 bytes: too long at the top, fine below.
    problems = broken(lambda d: d["button"][1].update(name="志愿者服务中心"))
    assert problems == ["button 2 (志愿者服务中心): name is 21 bytes, at most 16"]
    problems = broken(lambda d: d["button"][0]["sub_button"][0].update(name="预" * 21))
    assert len(problems) == 1 and "63 bytes, at most 60" in problems[0]
    problems = broken(lambda d: d["button"][0]["sub_button"][0].update(key="K" * 129))
    assert problems == ["button 1.1 (预约志愿服务): key longer than 128 bytes"]


def test_types_need_their_fields():
    problems = broken(lambda d: d["button"][2]["sub_button"].append({"type": "view", "name": "官网", "url": "ftp://x"}))
    assert problems == ["button 3.3 (官网): a view button needs an http(s) url"]
    problems = broken(lambda d: d["button"][2]["sub_button"].append({"type": "teleport", "name": "x"}))
    assert problems == ["button 3.3 (x): unknown button type 'teleport'"]
    problems = broken(lambda d: d["button"][2]["sub_button"].append({"type": "click", "name": "x"}))
    assert problems == ["button 3.3 (x): a click button needs a key"]
    ok = broken(lambda d: d["button"][2]["sub_button"].append({"type": "location_select", "name": "发送位置", "key": "LOC"}))
    assert ok == []


def test_load_refuses_a_broken_file(tmp_path):
    data = custom_menu.load()
    data["button"][0]["name"] = "居民服务居民服务"
    path = tmp_path / "menu.json"
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    with pytest.raises(custom_menu.MenuError) as e:
        custom_menu.load(path)
    assert e.value.problems == ["button 1 (居民服务居民服务): name is 24 bytes, at most 16"]


def test_volbot_menu_show_prints_the_json():
    from bot.cli import main

    result = CliRunner().invoke(main, ["menu", "show"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == custom_menu.load()
