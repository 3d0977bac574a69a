"""Resident ID numbers: structure, region, birth date, ISO 7064 MOD 11-2 check digit."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rules.pii import REGION_PREFIXES, IdNumberError, check_digit, parse_id_number

TODAY = date(2026, 11, 28)


def make(region="370705", born=date(1980, 5, 1), order="123"):
    first = f"{region}{born:%Y%m%d}{order}"
    return first + check_digit(first)


def test_known_numbers_from_the_standard():
    # 11010519491231002X is the textbook example (GB 11643); its check character is X.
    assert parse_id_number("11010519491231002X", TODAY).birth_date == date(1949, 12, 31)
    assert parse_id_number("11010519491231002x", TODAY).number.endswith("X")
    assert parse_id_number(" １１０１０５ １９４９１２３１ ００２Ｘ ", TODAY).number == "11010519491231002X"
    assert parse_id_number("幺幺零幺零五幺九四九幺二三幺零零二x", TODAY).number == "11010519491231002X"


@pytest.mark.parametrize("text, code", [
    ("110105194912310021", "check_digit"),
    ("110105194913310021", "birth_date"),
    ("11010519490230002X", "birth_date"),
    ("999999194912310021", "region"),
    ("110105491231002", "format"),
    ("11010519491231002Y", "format"),
    ("", "format"),
])
def test_refused_numbers_say_why(text, code):
    with pytest.raises(IdNumberError) as e:
        parse_id_number(text, TODAY)
    assert e.value.code == code


def test_future_birth_date_refused_but_today_accepted():
    assert parse_id_number(make(born=TODAY), TODAY).birth_date == TODAY
    with pytest.raises(IdNumberError) as e:
        parse_id_number(make(born=TODAY + timedelta(days=1)), TODAY)
    assert e.value.code == "future"


@settings(deadline=None)  # a loaded CI machine must not turn slowness into failure
@given(region=st.sampled_from(sorted(REGION_PREFIXES)), rest=st.integers(0, 9999),
       born=st.dates(date(1900, 1, 1), TODAY), order=st.integers(0, 999))
def test_every_well_formed_number_is_accepted(region, rest, born, order):
    number = make(f"{region:02d}{rest:04d}", born, f"{order:03d}")
    parsed = parse_id_number(number, TODAY)
    assert parsed.number == number and parsed.birth_date == born


@settings(deadline=None)  # a loaded CI machine must not turn slowness into failure
@given(born=st.dates(date(1900, 1, 1), TODAY), order=st.integers(0, 999), wrong=st.sampled_from("0123456789X"))
def test_any_other_check_character_is_refused(born, order, wrong):
    number = make(born=born, order=f"{order:03d}")
    if wrong == number[-1]:
        return
    with pytest.raises(IdNumberError) as e:
        parse_id_number(number[:-1] + wrong, TODAY)
    assert e.value.code == "check_digit"


@settings(deadline=None)  # a loaded CI machine must not turn slowness into failure
@given(born=st.dates(date(1950, 1, 1), TODAY), pos=st.integers(0, 16), delta=st.integers(1, 9))
def test_a_single_mistyped_digit_never_passes(born, pos, delta):
    number = make(born=born)
    changed = number[:pos] + str((int(number[pos]) + delta) % 10) + number[pos + 1:]
    with pytest.raises(IdNumberError):
        parse_id_number(changed, TODAY)


@settings(deadline=None)  # a loaded CI machine must not turn slowness into failure
@given(prefix=st.integers(0, 99).filter(lambda p: p not in REGION_PREFIXES))
def test_unknown_regions_refused(prefix):
    with pytest.raises(IdNumberError) as e:
        parse_id_number(make(region=f"{prefix:02d}0101"), TODAY)
    assert e.value.code == "region"


def test_age():
    p = parse_id_number(make(born=date(2008, 11, 29)), TODAY)
    assert p.age_on(TODAY) == 17
    assert p.age_on(date(2026, 11, 29)) == 18
