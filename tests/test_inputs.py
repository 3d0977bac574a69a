"""Input forgiveness: what elderly users type or say is read the way they meant it."""

from datetime import date

import pytest

from dialogue.flows import YES_NO, Choice, match_choice, match_many
from rules import masks
from rules.inputs import id_number, mobile, normalize, parse_int, yes_no


@pytest.mark.parametrize("raw,clean", [
    ("１２", "12"), ("①", "1"), ("1️⃣", "1"), (" 「确认」。 ", "确认"), ("好的！", "好的"),
    ("\u3000是的\u3000", "是的"), ("a\u200bb", "ab"), ("1  3", "1 3"),
])
def test_normalize(raw, clean):
    assert normalize(raw) == clean


@pytest.mark.parametrize("raw,number", [
    ("12", 12), ("１２", 12), ("十二", 12), ("两", 2), ("一", 1), ("第三个", 3), ("选2", 2),
    ("2个", 2), ("两百零五", 205), ("三十", 30), ("②", 2), ("第３项", 3),
    ("一二", None), ("十二点", None), ("一下", None), ("我想问一下", None), ("", None), ("abc", None),
])
def test_parse_int(raw, number):
    assert parse_int(raw) == number


@pytest.mark.parametrize("raw,answer", [
    ("是", True), ("是的", True), ("好的。", True), ("好啊", True), ("可以的", True), ("嗯嗯", True),
    ("确认提交", True), ("没问题", True), ("OK", True), ("对呀", True), ("不错", True),
    ("不", False), ("不好", False), ("不是", False), ("不用了", False), ("不需要", False),
    ("没有", False), ("否", False), ("算了吧", False), ("不确定", False), ("别", False), ("no", False),
    ("是不是", None), ("好不好", None), ("要不要", None), ("行不行", None), ("是吗", None),
    ("可以吗？", None), ("对不起", None), ("", None), ("随便", None),
])
def test_yes_no_negatives_first(raw, answer):
    assert yes_no(raw) is answer


@pytest.mark.parametrize("raw,phone", [
    ("13800138000", "13800138000"), ("138 0013 8000", "13800138000"), ("+86-13800138000", "13800138000"),
    ("１３８００１３８０００", "13800138000"), ("幺三八零零幺三八零零零", "13800138000"),
    ("12345678901", None), ("1380013800", None), ("10086", None), ("", None),
])
def test_mobile(raw, phone):
    assert mobile(raw) == phone


@pytest.mark.parametrize("raw,number", [
    ("11010519491231002X", "11010519491231002X"), ("11010519491231002x", "11010519491231002X"),
    ("110105 19491231 002X", "11010519491231002X"), ("１１０１０５１９４９１２３１００２Ｘ", "11010519491231002X"),
    ("110105194912310021", None),  # wrong check digit
    ("110105194913310021", None),  # month 13
    ("110105491231002", None),  # 15-digit legacy numbers are not taken
    ("990105194912310026", None),  # unknown province
])
def test_id_number(raw, number):
    assert id_number(raw, today=date(2026, 11, 28)) == number


def test_id_number_rejects_a_future_birth_date():
    # 2030-01-01 birth date with a correct check digit.
    body = "11010520300101123"
    weights = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    full = body + "10X98765432"[sum(int(d) * w for d, w in zip(body, weights)) % 11]
    assert id_number(full, today=date(2031, 1, 1)) == full
    assert id_number(full, today=date(2026, 11, 28)) is None


def test_masks():
    assert masks.phone("13812341234") == "138****1234"
    assert masks.phone("８８８８０００") == "*****00"
    assert masks.id_number("11010519491231002X") == "1101**********002X"
    assert masks.name("张三丰") == "张**"
    assert masks.phone(None) == ""


SERVICES = [Choice("meal", "助餐", aliases=("吃饭",)), Choice("clean", "助洁"), Choice("law", "法律咨询")]


@pytest.mark.parametrize("raw,value", [
    ("1", "meal"), ("①", "meal"), ("一", "meal"), ("第二个", "clean"), ("助洁。", "clean"),
    ("吃饭", "meal"), ("法律", "law"), ("我要法律咨询", "law"), ("4", None), ("0", None), ("洁", None),
])
def test_match_choice_by_number_or_text(raw, value):
    c = match_choice(raw, SERVICES)
    assert (c.value if c else None) == value


@pytest.mark.parametrize("raw,value", [
    ("是", True), ("好的", True), ("1", True), ("不好", False), ("不是", False), ("不用", False),
    ("2", False), ("否", False), ("是不是", None), ("随便", None),
])
def test_yes_no_choices_read_negatives_first(raw, value):
    c = match_choice(raw, YES_NO)
    assert (c.value if c else None) == value


@pytest.mark.parametrize("raw,values", [
    ("1 3", ["meal", "law"]), ("1、3", ["meal", "law"]), ("13", ["meal", "law"]), ("３，１", ["law", "meal"]),
    ("助餐和助洁", ["meal", "clean"]), ("全部", ["meal", "clean", "law"]), ("1 4", None), ("", None),
])
def test_match_many(raw, values):
    picked = match_many(raw, SERVICES)
    assert ([c.value for c in picked] if picked else None) == values
