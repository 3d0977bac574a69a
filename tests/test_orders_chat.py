"""Ordering and following orders over the real webhook: concurrency of confirms, duplicate
deliveries, the remembered phone, my orders (masking, cancel, rate) and erasure on
unsubscribe. Step-by-step wrong answers are in tests/conversations/orders.yaml."""

from __future__ import annotations

import re
import threading
from datetime import datetime, time, timedelta, timezone

from sqlalchemy import func, select

from rules import orders as store
from store.models import Follower, Order, OrderEvent
from tests import seeds
from tests.conftest import WeChat
from tests.seeds.orders import place_order, resident

NUMBER = re.compile(r"订单号：(D\d{8}-\d{4})")


def fill_form(w, user: str, phone: str = "13800138000") -> str:
    """From nothing to the summary, by typing a need; returns the summary."""
    w.event(user, "subscribe")
    assert "水电维修" in w.say(user, "家里水管坏了")
    w.say(user, "1")
    w.say(user, "厨房水龙头一直在滴水")
    w.say(user, "樱园小区3号楼2单元501")
    assert "联系电话" in w.say(user, "明天下午")
    summary = w.say(user, phone)
    assert "请核对您的预约" in summary
    return summary


def count_orders(svc) -> int:
    with svc.db.transaction() as s:
        return s.scalar(select(func.count()).select_from(Order))


def test_whole_order_with_summary_masked_and_phone_remembered(wechat, svc):
    summary = fill_form(wechat, "o_whole")
    assert "138****8000" in summary and "13800138000" not in summary
    assert re.search(r"预约时间：\d+月\d+日（周.）下午", summary)
    done = wechat.say("o_whole", "确认")
    number = NUMBER.search(done).group(1)
    assert "预约已提交" in done and "接下来" in done
    with svc.db.transaction() as s:
        order = s.scalar(select(Order).where(Order.number == number))
        assert (order.sub_code, order.status, order.phone) == ("08-01", "submitted", "13800138000")
        assert order.preferred_slot == "pm" and order.description == "厨房水龙头一直在滴水"
        assert s.scalar(select(Follower.phone).where(Follower.openid == "o_whole")) == "13800138000"
    # Next time the phone is offered (masked) and "是" takes it.
    wechat.say("o_whole", "冰箱坏了")
    wechat.say("o_whole", "1")
    wechat.say("o_whole", "冰箱不制冷了")
    wechat.say("o_whole", "樱园小区3号楼2单元501")
    ask = wechat.say("o_whole", "后天上午")
    assert "回复“是”使用：138****8000" in ask
    assert "请核对您的预约" in wechat.say("o_whole", "是")
    assert "预约已提交" in wechat.say("o_whole", "确认")
    assert count_orders(svc) == 2


def test_duplicate_delivery_of_the_confirm_creates_one_order(wechat_plain, svc):
    fill_form(wechat_plain, "o_dup")
    fields = wechat_plain.sender.text("o_dup", "确认")
    first = wechat_plain.send(fields)
    again = wechat_plain.send(fields)  # WeChat's retry: same MsgId
    assert first.text == again.text and "预约已提交" in first.text
    assert count_orders(svc) == 1


def test_two_confirms_racing_from_one_user_make_one_order(base_url, svc):
    w = WeChat(base_url, svc)
    fill_form(w, "o_race")
    start = threading.Barrier(2)
    replies: list[str] = []

    def confirm():
        mine = WeChat(base_url, svc)
        fields = mine.sender.text("o_race", "确认")  # a new MsgId each
        start.wait()
        replies.append(mine.send(fields).text)

    threads = [threading.Thread(target=confirm) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert count_orders(svc) == 1
    assert sum("预约已提交" in r for r in replies) == 1, replies


def test_many_users_confirming_at_once_get_distinct_numbers(base_url, svc):
    users = [f"o_many_{i}" for i in range(6)]
    for u in users:
        fill_form(WeChat(base_url, svc), u)
    start = threading.Barrier(len(users))
    replies: list[str] = []

    def confirm(user):
        w = WeChat(base_url, svc)
        fields = w.sender.text(user, "确认")
        start.wait()
        replies.append(w.send(fields).text)

    threads = [threading.Thread(target=confirm, args=(u,)) for u in users]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    numbers = [NUMBER.search(r).group(1) for r in replies if NUMBER.search(r)]
    assert len(numbers) == len(users), replies
    assert len(set(numbers)) == len(users)
    assert count_orders(svc) == len(users)


def test_my_orders_lists_masked_and_rates_a_completed_one(wechat, svc):
    seeds.apply(svc, ["order_resident_with_orders"])
    user = "o_res_orders"
    listing = wechat.say(user, "我的订单")
    assert listing.count("D2") == 3 and "13800138000" not in listing
    assert "服务已完成" in listing and "服务中" in listing
    # Newest first: the completed legal consultation is number 1.
    detail = wechat.say(user, "1")
    assert "婚姻家事咨询" in detail and "138****8000" in detail and "樱园小区3号楼" not in detail
    assert "1. 评价服务" in detail and "取消预约" not in detail
    assert "打分" in wechat.say(user, "1")
    wrong = wechat.say(user, "8")
    assert "打分" in wrong and "感谢" not in wrong
    assert "评价" in wechat.say(user, "5")
    assert "200字以内" in wechat.say(user, "好" * 201)
    thanks = wechat.say(user, "志愿者很耐心")
    assert "感谢您的评价" in thanks
    with svc.db.transaction() as s:
        rated = s.scalar(select(Order).where(Order.status == "rated"))
        assert rated.rating == 5 and rated.rating_comment == "志愿者很耐心"
        last = s.scalars(select(OrderEvent).where(OrderEvent.order_id == rated.id)
                         .order_by(OrderEvent.id.desc())).first()
        assert (last.to_status, last.actor_kind) == ("rated", "resident")


def test_an_order_in_service_cannot_be_cancelled(wechat_plain, svc):
    seeds.apply(svc, ["order_resident_with_orders"])
    user = "o_res_orders"
    wechat_plain.say(user, "我的订单")
    detail = wechat_plain.say(user, "2")  # in service: no actions, just the details
    assert "服务中" in detail and "取消预约" not in detail
    with svc.db.transaction() as s:
        number = s.scalar(select(Order.number).where(Order.status == "submitted"))
    # An order number typed outside any form opens it; it can be cancelled.
    opened = wechat_plain.say(user, number.lower())
    assert number in opened and "1. 取消预约" in opened
    wechat_plain.say(user, "1")
    assert "已取消订单" in wechat_plain.say(user, "时间改了")
    with svc.db.transaction() as s:
        order = s.scalar(select(Order).where(Order.number == number))
        assert order.status == "cancelled" and order.cancel_reason == "时间改了"
    assert "没有找到订单" in wechat_plain.say(user, "D20000101-0001")
    assert "还没有预约" in wechat_plain.say("o_nobody", "我的订单")


def test_a_cancel_raced_by_staff_starting_the_service_is_refused(wechat_plain, svc):
    seeds.apply(svc, ["order_resident_with_orders"])
    user = "o_res_orders"
    with svc.db.transaction() as s:
        order = s.scalar(select(Order).where(Order.status == "submitted"))
        number = order.number
    wechat_plain.say(user, number)
    wechat_plain.say(user, "1")
    with svc.db.transaction() as s:
        order = s.scalar(select(Order).where(Order.number == number))
        for to in ("accepted", "in_service"):
            store.transition(s, order, to, actor=store.Actor("volunteer", 1), now=svc.clock.now())
    assert "不能取消" in wechat_plain.say(user, "1")
    with svc.db.transaction() as s:
        assert s.scalar(select(Order.status).where(Order.number == number)) == "in_service"


def test_unsubscribe_erases_closed_orders_and_open_ones_when_they_close(wechat_plain, svc):
    with svc.db.transaction() as s:
        f = resident(s, "o_bye", phone="13800138000")
        done = place_order(s, f, status="completed").id
        waiting = place_order(s, f, status="accepted").id
    wechat_plain.event("o_bye", "unsubscribe")
    with svc.db.transaction() as s:
        closed, open_ = s.get(Order, done), s.get(Order, waiting)
        assert closed.phone is None and closed.address is None and closed.erased_at is not None
        assert open_.phone == "13800138000" and open_.erase_on_close
        store.transition(s, open_, "cancelled", actor=store.Actor("coordinator", 1), now=svc.clock.now(),
                         reason="居民已取消关注")
    with svc.db.transaction() as s:
        open_ = s.get(Order, waiting)
        assert open_.phone is None and open_.address is None and open_.description is None


def set_local_clock(svc, local: datetime) -> None:
    """Move the service clock so that it is `local` (Asia/Shanghai) now."""
    svc.clock.offset = local.astimezone(timezone.utc) - datetime.now(timezone.utc)


def test_numbers_follow_the_local_day_and_a_time_that_passed_is_refused_at_confirm(wechat_plain, svc):
    today = datetime.now(store.CHINA).date() + timedelta(days=3)
    # 00:30 in Shanghai is still the previous day in UTC: the number takes the local date.
    set_local_clock(svc, datetime.combine(today, time(0, 30), store.CHINA))
    user = "o_clock"
    fill_form(wechat_plain, user)
    done = wechat_plain.say(user, "确认")
    assert f"D{today:%Y%m%d}-0001" in done, done
    # At 10:40 a resident asks for 11:00 today, then waits on the summary past 11:00.
    set_local_clock(svc, datetime.combine(today, time(10, 40), store.CHINA))
    wechat_plain.say(user, "冰箱坏了")
    wechat_plain.say(user, "1")
    wechat_plain.say(user, "冰箱不制冷了")
    wechat_plain.say(user, "樱园小区3号楼2单元501")
    assert "上午11:00" in wechat_plain.say(user, "今天11点")
    assert "请核对您的预约" in wechat_plain.say(user, "是")
    svc.clock.advance(minutes=25)
    refused = wechat_plain.say(user, "确认")
    assert "您选的时间已经过去了" in refused and "请核对您的预约" in refused
    assert "希望什么时间服务" in wechat_plain.say(user, "4")  # 4. 预约时间 (no communities here)
    assert "请核对您的预约" in wechat_plain.say(user, "明天上午")
    assert f"D{today:%Y%m%d}-0002" in wechat_plain.say(user, "确认")
    assert count_orders(svc) == 2


def test_a_number_picks_the_slot_that_was_shown_even_once_the_slots_have_moved_on(wechat_plain, svc):
    """At 11:58 the first slot offered is 今天下午; the resident answers "1" at 12:01, when
    今天下午 has begun and is no longer offered to a new question: they get what they saw."""
    today = datetime.now(store.CHINA).date() + timedelta(days=3)
    set_local_clock(svc, datetime.combine(today, time(11, 58), store.CHINA))
    user = "o_slot"
    wechat_plain.say(user, "冰箱坏了")
    wechat_plain.say(user, "1")
    wechat_plain.say(user, "冰箱不制冷了")
    asked = wechat_plain.say(user, "樱园小区3号楼2单元501")
    assert re.search(r"\n1\. 今天 \S+下午\n", asked), asked
    svc.clock.advance(minutes=3)
    assert re.search(r"预约时间：今天 \S+下午\n", wechat_plain.say(user, "1"))
    summary = wechat_plain.say(user, "13800138000")
    assert f"预约时间：{today.month}月{today.day}日" in summary and "下午" in summary, summary
    assert "预约已提交" in wechat_plain.say(user, "确认")
    with svc.db.transaction() as s:
        assert s.scalar(select(Order.preferred_slot)) == "pm"


def test_what_is_needed_is_4_to_500_characters(wechat_plain, svc):
    user = "o_long"
    wechat_plain.say(user, "冰箱坏了")
    wechat_plain.say(user, "1")
    assert "请控制在500字以内" in wechat_plain.say(user, "冰" * 501)
    ask_address = wechat_plain.say(user, "冰" * 500)
    assert "请输入服务地址" in ask_address
    wechat_plain.say(user, "樱园小区3号楼2单元501")
    wechat_plain.say(user, "明天下午")
    summary = wechat_plain.say(user, "13800138000")
    assert re.search("2. 需求描述：冰{10,40}…\n", summary) and "冰" * 100 not in summary
    wechat_plain.say(user, "确认")
    with svc.db.transaction() as s:
        assert len(s.scalar(select(Order.description))) == 500
