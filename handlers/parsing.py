"""Reading a preferred service time: numbered slots and typed phrases.

Residents pick one of the numbered slots for the next days (上午/下午/晚上) or type a
phrase: 明天下午, 周六上午10点, 后天晚上, 下周三, 12月5号下午3点半, 3点. Everything is
resolved against the local (Asia/Shanghai) clock of the turn (`ctx.local_now`); a time in
the past, outside service hours or too far ahead is refused with a hint. The resolved
date is always shown back with its weekday, so a misheard phrase is caught at once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from dialogue.flows import Invalid
from rules.inputs import chinese_number, normalize
from rules.orders import SLOTS

# Parts of the day a volunteer can come, as local hours [start, end).
SLOT_HOURS = {"am": (8, 12), "pm": (12, 18), "eve": (18, 21), "day": (8, 21)}
SLOT_NAMES = SLOTS  # the names orders are stored and shown with
WEEKDAYS = "一二三四五六日"
EARLIEST, LATEST = 7, 21  # service hours for an exact time
MAX_DAYS_AHEAD = 30
SLOT_DAYS = 7

TIME_HINT = "请回复序号，或直接说时间，例如“明天下午”“周六上午10点”。"
_PERIODS = (("凌晨", "night"), ("早上", "am"), ("早晨", "am"), ("上午", "am"), ("中午", "noon"),
            ("下午", "pm"), ("傍晚", "eve"), ("晚上", "eve"), ("夜里", "eve"), ("晚", "eve"))
_WEEKDAY = {ch: i for i, ch in enumerate(WEEKDAYS)} | {"天": 6, "七": 6, "1": 0, "2": 1, "3": 2,
                                                     "4": 3, "5": 4, "6": 5, "7": 6}


@dataclass(frozen=True)
class When:
    """A preferred time: a local day and part of it, optionally an exact hour."""

    day: date
    slot: str  # am | pm | eve | day
    hour: int | None = None
    minute: int = 0

    def to_dict(self) -> dict:
        return {"day": self.day.isoformat(), "slot": self.slot, "hour": self.hour, "minute": self.minute}

    @classmethod
    def from_dict(cls, d: dict) -> "When":
        return cls(date.fromisoformat(d["day"]), d["slot"], d.get("hour"), d.get("minute") or 0)

    def exact(self, tz) -> datetime | None:
        if self.hour is None:
            return None
        return datetime.combine(self.day, time(self.hour, self.minute), tz)

    def ends(self, tz) -> datetime:
        if self.hour is not None:
            return self.exact(tz)
        return datetime.combine(self.day, time(SLOT_HOURS[self.slot][1] % 24), tz) if SLOT_HOURS[self.slot][1] < 24 \
            else datetime.combine(self.day + timedelta(days=1), time(0), tz)

    def label(self, today: date | None = None) -> str:
        """"明天 11月29日（周日）下午3:00"; the weekday always, the relative word when near."""
        rel = {0: "今天", 1: "明天", 2: "后天"}.get((self.day - today).days, "") if today else ""
        text = f"{self.day.month}月{self.day.day}日（周{WEEKDAYS[self.day.weekday()]}）{SLOT_NAMES[self.slot]}"
        if self.hour is not None:
            h12 = self.hour - 12 if self.hour > 12 else self.hour
            text += f"{h12}:{self.minute:02d}"
        return f"{rel} {text}" if rel else text


def slot_choices(now_local: datetime, days: int = SLOT_DAYS) -> list[When]:
    """The numbered slots: what is left of today, then the next days, 上午/下午/晚上 each."""
    out = []
    today = now_local.date()
    for offset in range(days):
        day = today + timedelta(days=offset)
        for slot in ("am", "pm", "eve"):
            start = datetime.combine(day, time(SLOT_HOURS[slot][0]), now_local.tzinfo)
            if start > now_local:
                out.append(When(day, slot))
    return out[:days * 3]


def _digits(text: str) -> str:
    """Chinese numerals before 月/日/号/点/时/分 become digits: 十二月五号 → 12月5号."""
    def repl(m: re.Match) -> str:
        n = chinese_number(m.group(1))
        return (str(n) if n is not None else m.group(1)) + m.group(2)

    return re.sub(r"([零〇一二两三四五六七八九十]+)(月|日|号|点|时|分)", repl, text)


def _day(t: str, today: date) -> tuple[date | None, bool]:
    """(the day named in `t`, whether it was named at all)."""
    for word, offset in (("大后天", 3), ("后天", 2), ("明天", 1), ("明日", 1), ("今天", 0), ("今日", 0),
                         ("今晚", 0), ("明早", 1), ("明晚", 1)):
        if word in t:
            return today + timedelta(days=offset), True
    m = re.search(r"(下下|下|本|这|这个)?(?:周|星期|礼拜)([一二三四五六日天七1-7])", t)
    if m:
        weekday = _WEEKDAY[m.group(2)]
        monday = today - timedelta(days=today.weekday())
        if m.group(1) in ("下", "下下"):
            weeks = 1 if m.group(1) == "下" else 2
            return monday + timedelta(days=7 * weeks + weekday), True
        if m.group(1):  # 本周/这周: this week's day, even if it is over (refused as past)
            return monday + timedelta(days=weekday), True
        return today + timedelta(days=(weekday - today.weekday()) % 7), True
    m = re.search(r"(\d{1,2})月(\d{1,2})[日号]?", t) or re.search(r"(?<!\d)(\d{1,2})[/\-.](\d{1,2})(?!\d)", t)
    if m:
        try:
            day = date(today.year, int(m.group(1)), int(m.group(2)))
        except ValueError:
            raise Invalid("没有这一天，请检查月份和日期。")
        if (today - day).days > 60:  # "1月5日" said in November means next January
            day = day.replace(year=today.year + 1)
        return day, True
    m = re.search(r"(?<!\d)(\d{1,2})[日号]", t)
    if m:
        d = int(m.group(1))
        year, month = today.year, today.month
        if d < today.day:  # "5号" late in the month means next month's 5th
            year, month = (year + 1, 1) if month == 12 else (year, month + 1)
        try:
            return date(year, month, d), True
        except ValueError:
            raise Invalid("没有这一天，请检查日期。")
    return None, False


def _clock(t: str) -> tuple[int, int] | None:
    m = re.search(r"(?<![\d月/])(\d{1,2})(?:[点时:：](半|一刻|三刻|(\d{1,2})分?)?)(?![日号月\d])", t)
    if not m or (":" not in t and "：" not in t and "点" not in t and "时" not in t):
        return None
    hour = int(m.group(1))
    tail = m.group(2) or ""
    minute = 30 if tail == "半" else 15 if tail == "一刻" else 45 if tail == "三刻" else int(m.group(3) or 0)
    if minute > 59:
        raise Invalid("分钟不对，请重新说时间，例如“下午3点半”。")
    return hour, minute


def parse_when(text: str, now_local: datetime) -> When:
    """A typed time phrase resolved against `now_local`; raises Invalid with a hint."""
    t = _digits(re.sub(r"\s+", "", normalize(text)))
    today = now_local.date()
    day, named = _day(t, today)
    named_periods = {p for word, p in _PERIODS if word in t}
    if len(named_periods) > 1:
        raise Invalid("时间和上午/下午对不上，请只说一个，例如“明天下午3点”。")
    period = next(iter(named_periods), None)
    if "今晚" in t or "明晚" in t:
        period = "eve"
    if "明早" in t:
        period = "am"
    clock = _clock(t)
    if not named and period is None and clock is None:
        raise Invalid("没有看懂这个时间。" + TIME_HINT)
    if period == "night":
        raise Invalid("凌晨不安排上门服务，请换个时间。")
    hour = minute = None
    if clock is not None:
        hour, minute = clock
        if period in ("pm", "eve") and hour < 12:
            hour += 12
        elif period == "noon" and hour < 6:
            hour += 12
        elif period is None and 1 <= hour <= 6:
            hour += 12  # "3点" for a home visit means the afternoon
        if not EARLIEST <= hour < LATEST or (hour == LATEST - 1 and minute > 30):
            raise Invalid(f"志愿服务时间在早{EARLIEST}点到晚{LATEST - 12}点之间，请换个时间。")
        slot = "am" if hour < 12 else "pm" if hour < 18 else "eve"
        if period in ("am", "pm", "eve") and period != slot:
            raise Invalid("时间和上午/下午对不上，请再说一次，例如“下午3点”。")
    else:
        slot = {"am": "am", "noon": "pm", "pm": "pm", "eve": "eve"}.get(period, "day")
    when = When(day or today, slot, hour, minute or 0)
    tz = now_local.tzinfo
    if when.day < today or when.ends(tz) <= now_local:
        raise Invalid(f"{when.label(today)}已经过去了，请选一个以后的时间。")
    if (when.day - today).days > MAX_DAYS_AHEAD:
        raise Invalid(f"只能预约{MAX_DAYS_AHEAD}天以内的时间。")
    return when
