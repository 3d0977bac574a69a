"""The needs menu: the shipped file is valid, a broken one is refused with every problem
named, search finds the right service for what residents say, and an import replaces the
menu for every process (stored in SQL)."""

from __future__ import annotations

import copy

import pytest
import yaml
from click.testing import CliRunner

from menus import catalog as cat
from rules import needs
from rules import orders as store


@pytest.fixture(scope="module")
def menu():
    return cat.load()


def raw():
    return yaml.safe_load(cat.DEFAULT_PATH.read_text(encoding="utf-8"))


def problems_of(data) -> list[str]:
    with pytest.raises(cat.CatalogError) as e:
        cat.from_dict(data)
    return e.value.problems


def test_shipped_menu_has_12_categories_and_48_subs(menu):
    assert len(menu.categories) == 12
    assert len(menu.subs) == 48
    assert menu.district == "奎文区"
    codes = [s.code for s in menu.subs]
    assert len(set(codes)) == 48
    for c in menu.categories:
        assert all(s.code.startswith(c.code + "-") for s in c.subs)
    # The categories the district report names are all there.
    names = {c.name for c in menu.categories}
    assert {"文艺服务", "心理咨询", "法律援助", "医疗护理", "四点半学校"} <= names
    assert all(s.mode in cat.MODES and 10 <= s.minutes <= 600 and s.keywords for s in menu.subs)


def test_duplicate_code_is_refused():
    data = raw()
    data["categories"][1]["subs"][0]["code"] = data["categories"][0]["subs"][0]["code"]
    found = problems_of(data)
    assert any("used twice" in p for p in found)
    assert any("does not start with its category" in p for p in found)


def test_counts_must_match_what_the_file_declares():
    data = raw()
    del data["categories"][11]["subs"][3]
    assert problems_of(data) == ["expected 48 sub-categories, found 47"]
    data = raw()
    data["categories"].pop()
    found = problems_of(data)
    assert "expected 12 categories, found 11" in found


def test_names_too_long_and_missing_fields_are_all_reported():
    data = raw()
    data["categories"][0]["name"] = "非常非常长的文艺类别名称"
    data["categories"][2]["subs"][1]["name"] = "一个名字特别特别长的服务项目"
    del data["categories"][3]["subs"][0]["description"]
    data["categories"][4]["subs"][0]["mode"] = "teleport"
    data["categories"][5]["subs"][0]["minutes"] = 0
    data["categories"][6]["subs"][0]["keywords"] = []
    found = problems_of(data)
    assert len(found) == 6, found
    assert any("`name` longer than 6" in p for p in found)
    assert any("`name` longer than 8" in p for p in found)
    assert any("`description` is missing" in p for p in found)
    assert any("mode must be one of" in p for p in found)
    assert any("minutes must be" in p for p in found)
    assert any("needs search keywords" in p for p in found)


def test_not_a_catalog_at_all():
    assert problems_of({"foo": 1}) == ["the file needs a `categories:` list"]
    with pytest.raises(cat.CatalogError):
        cat.parse_text("categories: [ {")


def test_a_round_trip_through_to_dict_keeps_everything(menu):
    assert cat.from_dict(menu.to_dict()) == menu


# What residents say → the sub-category that must come first.
SEARCHES = [
    ("家里水管坏了", "08-01"),
    ("想咨询离婚", "03-02"),
    ("老人没人照顾", "05-03"),
    ("冰箱坏了", "08-02"),
    ("孩子作业没人辅导", "07-01"),
    ("我要理发", "08-03"),
    ("邻居太吵了", "12-01"),
    ("被骗了怎么办", "12-03"),
    ("血压高想量一下", "04-01"),
    ("想学用微信视频", "08-04"),
    ("找律师打官司", "03-01"),
    ("老板拖欠工资", "03-03"),
    ("老伴走了心里难受", "02-04"),
    ("帮我打扫卫生", "06-01"),
    ("推轮椅出门", "09-01"),
    ("想借几本书看", "10-01"),
    ("暑假孩子没人管", "07-04"),
    ("家里燃气有味道", "12-02"),
    ("需要陪老人去医院看病", "05-04"),
    ("失眠焦虑睡不着", "02-01"),
    ("学广场舞", "01-03"),
    ("垃圾分类不会分", "11-03"),
    ("水电维修", "08-01"),
]


@pytest.mark.parametrize("phrase,code", SEARCHES)
def test_search_finds_the_right_service_first(menu, phrase, code):
    hits = needs.search(menu, phrase)
    assert hits, f"nothing found for {phrase}"
    assert hits[0].sub.code == code, [(h.sub.code, h.sub.name, h.score) for h in hits]


@pytest.mark.parametrize("phrase", ["你好", "今天天气不错", "谢谢", "哈哈哈", "123", "", "。"])
def test_search_finds_nothing_for_small_talk(menu, phrase):
    assert needs.search(menu, phrase) == []


def test_search_is_ranked_and_limited(menu):
    hits = needs.search(menu, "老人没人照顾", limit=2)
    assert len(hits) == 2
    assert hits[0].score >= hits[1].score


def test_find_category_by_name(menu):
    assert needs.find_category(menu, "法律援助").code == "03"
    assert needs.find_category(menu, "四点半").code == "07"
    assert needs.find_category(menu, "随便") is None


def test_import_replaces_the_menu_in_sql(svc, tmp_path, monkeypatch):
    data = raw()
    data["district"] = "测试区"
    data["categories"][0]["subs"][0]["name"] = "社区演出"
    path = tmp_path / "other.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    monkeypatch.setattr("bot.cli.build_services", lambda check=True: _shared(svc))
    monkeypatch.setattr("bot.commands.catalog.build_services", lambda check=True: _shared(svc))
    from bot.cli import main

    with svc.db.transaction() as s:
        assert store.current_catalog(s).sub("01-01").name == "文艺演出"
    result = CliRunner().invoke(main, ["import", "catalog", str(path)])
    assert result.exit_code == 0, result.output
    assert "12 categories, 48 sub-categories" in result.output
    with svc.db.transaction() as s:
        now = store.current_catalog(s)
    assert now.district == "测试区" and now.sub("01-01").name == "社区演出"


def test_import_of_a_bad_file_changes_nothing(svc, tmp_path, monkeypatch):
    data = copy.deepcopy(raw())
    data["categories"][0]["subs"][1]["code"] = "01-01"
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    monkeypatch.setattr("bot.commands.catalog.build_services", lambda check=True: _shared(svc))
    from bot.cli import main

    result = CliRunner().invoke(main, ["import", "catalog", str(path)])
    assert result.exit_code == 1
    assert "used twice" in result.output
    with svc.db.transaction() as s:
        assert store.current_catalog(s) == cat.load()


def test_dry_run_only_checks(tmp_path):
    from bot.cli import main

    result = CliRunner().invoke(main, ["import", "catalog", "--dry-run", str(cat.DEFAULT_PATH)])
    assert result.exit_code == 0 and "valid (12 categories, 48 sub-categories)" in result.output


class _shared:
    """The test services, closed by the fixture rather than by the command."""

    def __init__(self, svc):
        self._svc = svc
        self.db = svc.db

    def close(self):
        pass
