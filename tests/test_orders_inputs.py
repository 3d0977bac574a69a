"""Phone numbers as residents type or say them (handlers/common.py), and masking."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dialogue.flows import Invalid
from handlers.common import mask_address, mask_phone, parse_phone


@pytest.mark.parametrize("typed,number", [
    ("13800138000", "13800138000"),
    ("138 0013 8000", "13800138000"),
    ("１３８００１３８０００", "13800138000"),
    ("+86 138-0013-8000", "13800138000"),
    ("8613800138000", "13800138000"),
    ("幺三八零零幺三八零零零", "13800138000"),
    ("0536-8888000", "0536-8888000"),
    ("0536 88880000", "0536-88880000"),
    ("(010)62345678", "010-62345678"),
    ("021-6234 5678", "021-62345678"),
    ("05368888000", "0536-8888000"),
])
def test_accepted(typed, number):
    assert parse_phone(typed) == number


@pytest.mark.parametrize("typed,hint", [
    ("12345", "您输入了5位"),
    ("1380013800", "您输入了10位"),
    ("12800138000", "不像手机号"),
    ("88886666", "请加上区号"),
    ("8888666", "请加上区号"),
    ("电话是一三八", "只能是数字"),
    ("0000-1234567", "请输入11位手机号"),
    ("0536-1234567", "请输入11位手机号"),  # a local number cannot start with 1
    ("10086", "您输入了5位"),
])
def test_refused_with_a_hint(typed, hint):
    with pytest.raises(Invalid) as e:
        parse_phone(typed)
    assert hint in e.value.hint


def test_mobile_only():
    assert parse_phone("13800138000", mobile_only=True) == "13800138000"
    with pytest.raises(Invalid, match="11位手机号"):
        parse_phone("0536-8888000", mobile_only=True)


def test_masks():
    assert mask_phone("13800138000") == "138****8000"
    assert mask_phone("0536-8888000") == "0536-***8000"
    assert mask_phone("010-62345678") == "010-****5678"
    assert mask_phone(None) == "" and mask_phone("") == ""
    assert mask_address("樱园小区3号楼2单元501") == "樱园小区***"
    assert mask_address("奎文区东风东街与新华路路口") == "奎文区东风东***"
    assert mask_address(None) == ""


@given(st.from_regex(r"1[3-9][0-9]{9}", fullmatch=True))
def test_every_mobile_reads_back_and_masks_to_seven_hidden_digits(number):
    assert parse_phone(number) == number
    masked = mask_phone(number)
    assert masked[:3] == number[:3] and masked[-4:] == number[-4:] and masked[3:7] == "****"


@given(st.text(max_size=30))
def test_anything_typed_gives_a_number_or_a_hint(text):
    try:
        number = parse_phone(text)
    except Invalid as e:
        assert e.hint
    else:
        assert number.replace("-", "").isdigit()


def test_digits_of_other_scripts_are_not_taken_for_a_number():
    with pytest.raises(Invalid):
        parse_phone("0536-٨٨٨٨٠٠٠")
