"""Preferred-time phrases and slots against a fixed clock: Saturday 2026-11-28 09:30 in
Asia/Shanghai (01:30 UTC)."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dialogue.flows import Invalid
from handlers.parsing import When, parse_when, slot_choices

CHINA = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 11, 28, 9, 30, tzinfo=CHINA)  # a Saturday


@pytest.mark.parametrize("phrase,day,slot,hour,minute", [
    ("明天下午", date(2026, 11, 29), "pm", None, 0),
    ("周六上午10点", date(2026, 11, 28), "am", 10, 0),  # today is Saturday
    ("周六上午 10点", date(2026, 11, 28), "am", 10, 0),
    ("后天晚上", date(2026, 11, 30), "eve", None, 0),
    ("大后天上午", date(2026, 12, 1), "am", None, 0),
    ("下周三", date(2026, 12, 2), "day", None, 0),
    ("下星期一上午9点", date(2026, 11, 30), "am", 9, 0),
    ("星期日", date(2026, 11, 29), "day", None, 0),
    ("礼拜五下午", date(2026, 12, 4), "pm", None, 0),  # the coming Friday
    ("12月5号下午3点半", date(2026, 12, 5), "pm", 15, 30),
    ("十二月五号", date(2026, 12, 5), "day", None, 0),
    ("明天下午两点", date(2026, 11, 29), "pm", 14, 0),
    ("明天上午九点一刻", date(2026, 11, 29), "am", 9, 15),
    ("3点", date(2026, 11, 28), "pm", 15, 0),  # a bare 3 o'clock is the afternoon
    ("今晚7点", date(2026, 11, 28), "eve", 19, 0),
    ("明早8点", date(2026, 11, 29), "am", 8, 0),
    ("今天上午", date(2026, 11, 28), "am", None, 0),  # not over yet at 09:30
    ("下午", date(2026, 11, 28), "pm", None, 0),
    ("5号", date(2026, 12, 5), "day", None, 0),  # the 5th has passed this month
    ("12/3", date(2026, 12, 3), "day", None, 0),
    ("明天 14:30", date(2026, 11, 29), "pm", 14, 30),
    ("明天中午12点", date(2026, 11, 29), "pm", 12, 0),
    ("１２月１日上午", date(2026, 12, 1), "am", None, 0),  # full-width digits
])
def test_phrases(phrase, day, slot, hour, minute):
    assert parse_when(phrase, NOW) == When(day, slot, hour, minute)


@pytest.mark.parametrize("phrase,hint", [
    ("今天早上8点", "已经过去了"),
    ("11月20日", "已经过去了"),
    ("本周一", "已经过去了"),
    ("明天凌晨3点", "凌晨"),
    ("明天上午3点", "早7点到晚9点"),
    ("明天22点", "早7点到晚9点"),
    ("明天上午4点半", "早7点到晚9点"),
    ("上午5点", "早7点到晚9点"),
    ("明天上午下午3点", "对不上"),
    ("1月5日", "30天以内"),  # next January: too far ahead
    ("2月30日", "没有这一天"),
    ("明年", "没有看懂"),
    ("随便", "没有看懂"),
])
def test_refusals(phrase, hint):
    with pytest.raises(Invalid) as e:
        parse_when(phrase, NOW)
    assert hint in e.value.hint


def test_evening_of_today_refused_late_at_night():
    late = datetime(2026, 11, 28, 21, 5, tzinfo=CHINA)
    with pytest.raises(Invalid, match="已经过去了"):
        parse_when("今天晚上", late)
    assert parse_when("明天晚上", late) == When(date(2026, 11, 29), "eve")


def test_labels_show_the_weekday():
    assert When(date(2026, 11, 29), "pm").label(NOW.date()) == "明天 11月29日（周日）下午"
    assert When(date(2026, 12, 5), "pm", 15, 30).label(NOW.date()) == "12月5日（周六）下午3:30"
    assert When(date(2026, 11, 28), "day").label() == "11月28日（周六）全天"


def test_slots_cover_the_rest_of_today_and_six_more_days():
    slots = slot_choices(NOW)
    # 09:30: this morning has started, so today offers 下午 and 晚上 only.
    assert slots[0] == When(date(2026, 11, 28), "pm")
    assert slots[1] == When(date(2026, 11, 28), "eve")
    assert slots[2] == When(date(2026, 11, 29), "am")
    assert len(slots) == 2 + 6 * 3
    assert slots[-1] == When(date(2026, 12, 4), "eve")
    early = slot_choices(datetime(2026, 11, 28, 6, 0, tzinfo=CHINA))
    assert early[0] == When(date(2026, 11, 28), "am") and len(early) == 21


def test_round_trip_through_state():
    w = When(date(2026, 12, 5), "pm", 15, 30)
    assert When.from_dict(w.to_dict()) == w
    assert w.exact(CHINA) == datetime(2026, 12, 5, 15, 30, tzinfo=CHINA)
    assert When(date(2026, 12, 5), "pm").exact(CHINA) is None


@settings(max_examples=200, deadline=None)
@given(minutes=st.integers(min_value=0, max_value=60 * 24 * 14), phrase=st.sampled_from(
    ["明天下午", "后天晚上", "周六上午10点", "下周三", "3点", "今天上午", "下午", "星期日", "明早8点"]))
def test_an_accepted_time_is_never_in_the_past(minutes, phrase):
    now = NOW + timedelta(minutes=minutes)
    try:
        w = parse_when(phrase, now)
    except Invalid:
        return
    assert w.ends(CHINA) > now
    assert 0 <= (w.day - now.date()).days <= 30
