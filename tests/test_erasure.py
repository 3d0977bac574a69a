"""Unsubscribe erases everything it should (issue 28.7): a unique marker typed into every
free-text field a resident reaches by chat (an order's description and address, a cancel
reason, a rating comment, a message left for staff) is found in no text column of any
table and in no Redis key or value once they unsubscribe (the retry cache included)."""

from __future__ import annotations

import re

from sqlalchemy import JSON, String, Text, cast, or_, select

from rules import orders as store
from store.models import Base, Order
from tests.test_orders_chat import NUMBER

USER = "o_erase_everything"


def marker(field: str) -> str:
    return f"标记{field}QX7"


def order(w, description: str, address: str) -> str:
    assert "水电维修" in w.say(USER, "家里水管坏了")
    w.say(USER, "1")
    w.say(USER, description)
    w.say(USER, address)
    assert "联系电话" in w.say(USER, "明天下午")
    assert "请核对您的预约" in w.say(USER, "13800138000")
    return NUMBER.search(w.say(USER, "确认")).group(1)


def found_in_sql(svc, needle: str) -> list[str]:
    """Every (table.column) whose text holds `needle`: all string, text and JSON columns."""
    hits = []
    with svc.db.transaction() as s:
        for table in Base.metadata.sorted_tables:
            columns = [c for c in table.columns if isinstance(c.type, (String, Text, JSON))]
            for c in columns:
                text = c if not isinstance(c.type, JSON) else cast(c, Text)
                if s.execute(select(table).where(or_(text.contains(needle))).limit(1)).first() is not None:
                    hits.append(f"{table.name}.{c.name}")
    return hits


def found_in_redis(svc, needle: str) -> list[str]:
    """Every Redis key whose name or value holds `needle`, whatever the value's type."""
    r, raw, hits = svc.redis, needle.encode(), []
    for key in r.scan_iter(count=1000):
        kind = r.type(key).decode()
        if kind == "string":
            values = [r.get(key) or b""]
        elif kind == "hash":
            values = [b"".join(kv) for kv in r.hgetall(key).items()]
        elif kind == "list":
            values = r.lrange(key, 0, -1)
        elif kind == "set":
            values = list(r.smembers(key))
        elif kind == "zset":
            values = r.zrange(key, 0, -1)
        elif kind == "stream":
            values = [b"".join(b"".join(kv) for kv in fields.items()) for _, fields in r.xrange(key)]
        else:
            values = []
        # The text as typed, or as JSON escapes it (ensure_ascii) in a cached document.
        escaped = needle.encode("unicode_escape").replace(b"\\u", b"\\\\u")
        if raw in key or any(raw in v or re.search(escaped, v) for v in values):
            hits.append(key.decode(errors="replace"))
    return hits


def test_every_free_text_field_is_gone_from_sql_and_redis_after_unsubscribe(wechat_plain, svc):
    w = wechat_plain
    w.event(USER, "subscribe")
    cancelled = order(w, f"厨房水龙头滴水{marker('desc1')}", f"樱园小区3号楼2单元501{marker('addr1')}")
    rated = order(w, f"卫生间漏水{marker('desc2')}", f"樱园小区5号楼1单元302{marker('addr2')}")

    opened = w.say(USER, cancelled)
    assert "1. 取消预约" in opened
    w.say(USER, "1")
    assert "已取消订单" in w.say(USER, f"时间改了{marker('reason')}")

    with svc.db.transaction() as s:
        row = s.scalar(select(Order).where(Order.number == rated))
        for to in ("accepted", "in_service", "completed"):
            store.transition(s, row, to, actor=store.Actor("volunteer", 1), now=svc.clock.now())
    detail = w.say(USER, rated)
    choice = re.search(r"(\d)\. 评价服务", detail).group(1)
    assert "打分" in w.say(USER, choice)
    w.say(USER, "5")
    assert "感谢您的评价" in w.say(USER, f"志愿者很耐心{marker('comment')}")

    # Stuck in a form: three wrong answers, then a message for staff.
    w.say(USER, "家里水管坏了")
    w.say(USER, "1")
    w.say(USER, f"热水器不热{marker('desc3')}")
    w.say(USER, f"樱园小区7号楼{marker('addr3')}")
    w.say(USER, "明天下午")
    for wrong in ("不知道", "没有", "abc"):
        reply = w.say(USER, wrong)
    assert "给工作人员留言" in reply
    w.say(USER, "1")
    assert "留言已收到" in w.say(USER, f"请晚上打电话{marker('message')}")

    fields = ("desc1", "addr1", "desc2", "addr2", "reason", "comment", "desc3", "addr3", "message")
    before = {f: found_in_sql(svc, marker(f)) + found_in_redis(svc, marker(f)) for f in fields}
    assert all(before.values()), before  # the test finds what it looks for

    assert w.event(USER, "unsubscribe") == ""
    after = {f: found_in_sql(svc, marker(f)) + found_in_redis(svc, marker(f)) for f in fields}
    assert after == {f: [] for f in fields}, repr(after)
