"""Dispatch rules on real SQL: the documented ranking, offers timing out through the
scheduler's due-work pass, escalation, the accept race, reassignment, the minutes cap,
automatic confirmation and paying with time. Chat journeys are in conversations/dispatch.yaml.
"""

from __future__ import annotations

import threading
from datetime import date, timedelta

import pytest
from sqlalchemy import select

from menus.catalog import load
from pushes.scheduler import run_pass
from rules import dispatch, timebank, volunteering
from rules import orders as order_rules
from rules import timebank_family as family
from store.models import Community, Follower, HourRecord, Offer, Order, Push, TimePayment, Volunteer
from tests.seeds import apply

WEDNESDAY = date(2030, 1, 9)
SETTINGS = dispatch.Settings(offer_minutes=30, confirm_hours=48, cap_factor=2)


@pytest.fixture
def world(svc):
    apply(svc, ["dispatch_world"])
    return svc


def new_order(session, now, *, community="DC-YY", sub="08-01", day=WEDNESDAY, slot="pm", openid="o_dres") -> Order:
    menu = load()
    s = menu.sub(sub)
    follower = session.scalar(select(Follower).where(Follower.openid == openid))
    c = session.scalar(select(Community).where(Community.code == community))
    order, _ = order_rules.create_order(
        session, follower=follower, sub=s, category_name=menu.category_of(s).name, description="水管漏水",
        address="樱园小区3号楼2单元501", phone="13812345678", preferred=order_rules.Preferred(day, slot),
        now=now, community_id=c.id)
    return order


def vol(session, number) -> Volunteer:
    return session.scalar(select(Volunteer).where(Volunteer.number == number))


def ranking(session, order, now):
    return [(c.volunteer.number, c.score, c.offerable) for c in dispatch.rank(session, order, now)]


def live(session, order):
    offer = dispatch.live_offer(session, order)
    return offer and offer.volunteer.number


# ---- ranking ----------------------------------------------------------------------------

def test_the_documented_ranking(world):
    now = world.clock.now()
    with world.db.transaction() as s:
        order = new_order(s, now)
        assert ranking(s, order, now) == [
            ("KW2026100001", 55, True),   # 樱园: same community 40 + no availability 5 + never 10
            ("KW2026100002", 50, True),   # 金都: same street 20 + afternoons 20 + never 10
            ("KW2026100003", 40, True),   # 新苑 ≈2.4 km: 10 + 20 + 10
            ("KW2026100005", 30, False),  # 北海 ≈5.8 km: 0 + 20 + 10, not in chat
        ]
        li = dispatch.rank(s, order, now)[0]
        assert li.reasons == ["具备“便民维修”技能", "同社区（樱园社区）+40", "未填写可服务时间 +5", "还没有接过单 +10"]
        wang = dispatch.rank(s, order, now)[1]
        assert "同街道（广文街道）+20" in wang.reasons and "工作日下午有空 +20" in wang.reasons
        zhao = dispatch.rank(s, order, now)[2]
        assert any(r.startswith("距离约2.4公里 +10") for r in zhao.reasons)


def test_an_evening_order_and_load_declines_and_fairness_change_the_order(world):
    now = world.clock.now()
    with world.db.transaction() as s:
        busy = new_order(s, now - timedelta(days=1))
        li, wang = vol(s, "KW2026100001"), vol(s, "KW2026100002")
        # 李 accepted another order a day ago (open: −15, fairness +1); 王 declined one 2 days ago (−5).
        s.add(Offer(order_id=busy.id, volunteer_id=li.id, state="accepted", offered_at=now - timedelta(days=1),
                    decided_at=now - timedelta(days=1), score=0, reasons=[]))
        order_rules.transition(s, busy, "accepted", actor=order_rules.SYSTEM, now=now)
        other = new_order(s, now - timedelta(days=2))
        s.add(Offer(order_id=other.id, volunteer_id=wang.id, state="declined", offered_at=now - timedelta(days=2),
                    decided_at=now - timedelta(days=2), score=0, reasons=[]))
        s.flush()
        order = new_order(s, now, slot="eve")  # nobody said evenings: no +20 for 王 and 赵
        assert ranking(s, order, now) == [
            ("KW2026100001", 31, True),   # 40 + 5 − 15 + 1
            ("KW2026100002", 25, True),   # 20 + 0 − 5 + 10
            ("KW2026100003", 20, True),   # 10 + 0 + 10
            ("KW2026100005", 10, False),
        ]
        assert "手头有1单未完成 -15" in dispatch.rank(s, order, now)[0].reasons
        assert "近30天婉拒或未回复1次 -5" in dispatch.rank(s, order, now)[1].reasons


def test_the_resident_is_never_their_own_candidate(world):
    now = world.clock.now()
    with world.db.transaction() as s:
        order = new_order(s, now, openid="o_dv_li")
        assert "KW2026100001" not in [n for n, _, _ in ranking(s, order, now)]


# ---- offers, timeouts, escalation -------------------------------------------------------

def test_offer_shows_the_community_not_the_address(world):
    now = world.clock.now()
    with world.db.transaction() as s:
        order = new_order(s, now)
        offer = dispatch.offer_next(s, order, now, SETTINGS)
        assert offer.volunteer.number == "KW2026100001" and order.status == "offered"
        assert offer.due_at == now + timedelta(minutes=30) and offer.score == 55
        push = s.scalar(select(Push).where(Push.openid == "o_dv_li"))
        text = "".join(push.data.values())
        assert "樱园社区" in text and "3号楼" not in text and "13812345678" not in text


def test_unanswered_offers_move_on_through_the_scheduler_then_escalate(world):
    with world.db.transaction() as s:
        order = new_order(s, world.clock.now())
        dispatch.offer_next(s, order, world.clock.now(), SETTINGS)
        oid = order.id
    world.clock.advance(minutes=29)
    assert dispatch.run_due(world, SETTINGS) == 0
    world.clock.advance(minutes=2)
    run_pass(world)  # the scheduler's pass runs the due work (pushes.scheduler.DUE_WORK)
    with world.db.transaction() as s:
        order = s.get(Order, oid)
        assert live(s, order) == "KW2026100002"
        assert s.scalar(select(Offer.state).where(Offer.volunteer_id == vol(s, "KW2026100001").id)) == "expired"
    for expected in ("KW2026100003", None):
        world.clock.advance(minutes=31)
        dispatch.run_due(world, SETTINGS)
        with world.db.transaction() as s:
            assert live(s, s.get(Order, oid)) == expected
    with world.db.transaction() as s:
        assert s.get(Order, oid).status == "escalated"
        told = s.scalars(select(Push.openid).where(Push.title == "工单无人接单，请派单").order_by(Push.openid)).all()
        assert told == ["o_dc_gw", "o_dc_top"]  # 樱园's detachment and the brigade above it


def test_a_waiting_order_with_nobody_to_ask_is_escalated_by_the_scheduler(world):
    with world.db.transaction() as s:
        order = new_order(s, world.clock.now(), sub="05-01")  # medical: only 钱医生, not listed in 08
        for v in s.scalars(select(Volunteer)):
            v.skills = []
        oid = order.id
    assert dispatch.run_due(world, SETTINGS) == 1
    with world.db.transaction() as s:
        assert s.get(Order, oid).status == "escalated"


# ---- accepting ---------------------------------------------------------------------------

def test_two_volunteers_accepting_at_once_exactly_one_wins(world):
    """李's offer timed out and went to 王; both answer 接单 at the same moment."""
    with world.db.transaction() as s:
        order = new_order(s, world.clock.now())
        dispatch.offer_next(s, order, world.clock.now(), SETTINGS)
        oid = order.id
    world.clock.advance(minutes=31)
    dispatch.run_due(world, SETTINGS)
    barrier = threading.Barrier(2)
    results: dict[str, str] = {}

    def answer(number):
        barrier.wait()
        try:
            with world.db.transaction() as s:
                dispatch.accept(s, vol(s, number), s.get(Order, oid), world.clock.now())
            results[number] = "won"
        except dispatch.DispatchError as e:
            results[number] = e.message

    threads = [threading.Thread(target=answer, args=(n,)) for n in ("KW2026100001", "KW2026100002")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(results.values()).count("won") == 1, results
    loser = next(m for m in results.values() if m != "won")
    assert "已经有其他志愿者接了" in loser
    with world.db.transaction() as s:
        order = s.get(Order, oid)
        assert order.status == "accepted"
        assert s.scalars(select(Offer.state).where(Offer.order_id == oid, Offer.state == "accepted")).all() == ["accepted"]
        assert s.scalars(select(Offer.state).where(Offer.order_id == oid, Offer.state == "offered")).all() == []


def test_reassignment_by_chat_withdraws_and_tells_the_first_volunteer(world, wechat_plain):
    with world.db.transaction() as s:
        order = new_order(s, world.clock.now())
        dispatch.offer_next(s, order, world.clock.now(), SETTINGS)
        number = order.number
    assert "接单成功" in wechat_plain.say("o_dv_li", "接单")
    shown = wechat_plain.say("o_dc_gw", f"派单 {number}")
    assert "推荐志愿者" in shown and "王师傅 KW2026100002 50分" in shown and "本单已联系过" in shown
    assert "没有找到志愿者" in wechat_plain.say("o_dc_gw", f"派单 {number} KW9")
    assert "只对队伍的协调员开放" in wechat_plain.say("o_dres", f"派单 {number} KW2026100002")
    done = wechat_plain.say("o_dc_gw", f"派单 {number} KW2026100002 李师傅临时有事")
    assert "已将工单" in done and "王师傅" in done
    with world.db.transaction() as s:
        order = s.scalar(select(Order).where(Order.number == number))
        assert order.status == "offered" and live(s, order) == "KW2026100002"
        assert s.scalar(select(Push.data).where(Push.openid == "o_dv_li", Push.title == "工单已改派")) is not None
        reasons = [e.reason for e in order.events]
        assert "李师傅临时有事" in reasons
    assert "不是您接的单" in wechat_plain.say("o_dv_li", f"开始服务 {number}")
    assert "接单成功" in wechat_plain.say("o_dv_wang", f"接单 {number}")
    # The coordinator of 北苑 does not cover 金都's volunteers... but 大队 does.
    assert "无需重复派单" in wechat_plain.say("o_dc_top", f"派单 {number} KW2026100002")


# ---- the service, the cap, confirmation, time ---------------------------------------------

def accepted(svc, volunteer="KW2026100001", **kw) -> int:
    with svc.db.transaction() as s:
        order = new_order(s, svc.clock.now(), **kw)
        dispatch.assign(s, order, vol(s, volunteer), svc.clock.now(), coordinator=None, settings=SETTINGS)
        dispatch.accept(s, vol(s, volunteer), order, svc.clock.now())
        return order.id


def test_minutes_above_the_cap_are_credited_only_when_a_coordinator_approves(world):
    oid = accepted(world)
    with world.db.transaction() as s:
        order, li = s.get(Order, oid), vol(s, "KW2026100001")
        dispatch.start_service(s, li, order, world.clock.now())
        offer = dispatch.complete_service(s, li, order, 200, world.clock.now(), SETTINGS)
        assert (offer.claimed_minutes, offer.minutes, offer.minutes_cap) == (200, 120, 120)
        record = dispatch.confirm(s, order, actor=order_rules.Actor("resident", order.follower_id), now=world.clock.now())
        assert record.minutes == 120 and record.flagged == "申报200分钟，超出上限120分钟"
        assert dispatch.approve_claimed_minutes(s, order, world.clock.now(), coordinator=None) == 200
        rows = s.execute(select(HourRecord.minutes, HourRecord.state).order_by(HourRecord.id)).all()
        assert rows == [(120, "rejected"), (200, "pending")]


def test_no_answer_in_48_hours_confirms_and_records_pending_hours(world):
    oid = accepted(world)
    with world.db.transaction() as s:
        order, li = s.get(Order, oid), vol(s, "KW2026100001")
        dispatch.start_service(s, li, order, world.clock.now())
        dispatch.complete_service(s, li, order, 50, world.clock.now(), SETTINGS)
    world.clock.advance(hours=47)
    dispatch.run_due(world, SETTINGS)
    with world.db.transaction() as s:
        assert s.get(Order, oid).status == "completed"
    world.clock.advance(hours=2)
    assert dispatch.run_due(world, SETTINGS) == 1
    with world.db.transaction() as s:
        order = s.get(Order, oid)
        assert order.status == "confirmed" and order.events[-1].actor_kind == "system"
        r = s.scalar(select(HourRecord))
        assert (r.minutes, r.state, r.source, r.source_ref) == (50, "pending", "order", f"order:{order.number}")
        told = s.scalar(select(Push).where(Push.openid == "o_dv_li", Push.title == "服务已确认"))
        assert told.data["备注"] == "50分钟待审核"
        [decision] = volunteering.decide_hours(s, [r.id], approve=True, now=world.clock.now(), coordinator=None)
        assert decision.outcome == "approved"
        assert timebank.balance(s, vol(s, "KW2026100001")) == 50


def give_balance(s, volunteer: Volunteer, minutes: int, now, ref: str = "seed") -> None:
    """Approved activity hours: the approval credits the time bank."""
    r = HourRecord(volunteer_id=volunteer.id, source="activity", source_ref=f"{ref}:{volunteer.id}",
                   minutes=minutes, started_at=now - timedelta(minutes=minutes), ended_at=now)
    s.add(r)
    s.flush()
    volunteering.decide_hours(s, [r.id], approve=True, now=now, coordinator=None)


def test_paying_with_time_is_refused_up_front_when_short_and_debited_on_confirmation(world):
    now = world.clock.now()
    with world.db.transaction() as s:
        qian = vol(s, "KW2026100004")  # 钱医生 orders a repair for herself, paying with her time
        give_balance(s, qian, 45, now)
        order = new_order(s, now, openid="o_dv_qian")
        with pytest.raises(dispatch.DispatchError, match="余额不足"):
            dispatch.pay_with_time(s, order, qian, qian.follower, now)
        stranger = s.scalar(select(Follower).where(Follower.openid == "o_dres"))
        with pytest.raises(dispatch.DispatchError, match="绑定的家人"):
            dispatch.pay_with_time(s, order, qian, stranger, now)
        give_balance(s, qian, 60, now, ref="more")
        payment = dispatch.pay_with_time(s, order, qian, qian.follower, now)
        assert payment.minutes == 60 and payment.state == "pending"
        assert timebank.balance(s, qian) == 105  # nothing taken before confirmation
        oid = order.id
    with world.db.transaction() as s:
        order, li = s.get(Order, oid), vol(s, "KW2026100001")
        dispatch.assign(s, order, li, now, coordinator=None, settings=SETTINGS)
        dispatch.accept(s, li, order, now)
        dispatch.complete_service(s, li, order, 60, now, SETTINGS)
        dispatch.confirm(s, order, actor=order_rules.Actor("resident", order.follower_id), now=now)
        assert timebank.balance(s, vol(s, "KW2026100004")) == 45
        assert dispatch.payment_of(s, order).state == "paid"
        assert timebank.audit(s).ok


def test_payable_accounts_are_ones_own_then_the_familys_with_minutes_only(world):
    """钱医生 may spend her own balance and, as designated family, 王师傅's and 赵师傅's; 赵's
    is empty and 李师傅 never named her: those are not offered."""
    now = world.clock.now()
    with world.db.transaction() as s:
        qian, wang, zhao, li = (vol(s, n) for n in ("KW2026100004", "KW2026100002", "KW2026100003", "KW2026100001"))
        for v, minutes in ((qian, 30), (wang, 90), (li, 60)):
            give_balance(s, v, minutes, now)
        for v in (zhao, wang):
            family.accept_invite(s, family.invite(s, v, "母亲", now).code, qian.follower, now)
        assert [(acc.volunteer_id, whose, m) for acc, whose, m in dispatch.payable_accounts(s, qian.follower)] == [
            (qian.id, "本人", 30), (wang.id, "王**的", 90)]
        stranger = s.scalar(select(Follower).where(Follower.openid == "o_dres"))
        assert dispatch.payable_accounts(s, stranger) == []
        assert [acc.volunteer_id for acc, _, _ in dispatch.payable_accounts(s, li.follower)] == [li.id]


def test_the_order_form_offers_time_payment_only_to_those_who_can_pay(world, wechat_plain):
    with world.db.transaction() as s:
        give_balance(s, vol(s, "KW2026100004"), 90, world.clock.now())
    w = wechat_plain
    for text in ("预约", "8", "1", "卫生间水管接头漏水", "樱园小区3号楼2单元501", "1", "明天下午"):
        w.say("o_dv_qian", text)
    ask = w.say("o_dv_qian", "13812345678")
    assert "时间银行" in ask and "用本人时间银行支付（余额1.5小时）" in ask and "不使用" in ask
    summary = w.say("o_dv_qian", "1")
    assert "时间银行：本人时间银行" in summary
    done = w.say("o_dv_qian", "确认")
    assert "支付：时间银行" in done
    with world.db.transaction() as s:
        assert s.scalar(select(TimePayment.state)) == "pending"


def test_time_payment_short_balance_is_refused_in_the_form(world, wechat_plain):
    with world.db.transaction() as s:
        give_balance(s, vol(s, "KW2026100004"), 30, world.clock.now())  # a repair takes 60
    w = wechat_plain
    for text in ("预约", "8", "1", "卫生间水管接头漏水", "樱园小区3号楼2单元501", "1", "明天下午", "13812345678"):
        w.say("o_dv_qian", text)
    refused = w.say("o_dv_qian", "1")
    assert "时间银行余额不足：这项服务需要1小时，余额30分钟" in refused and "不使用" in refused
    assert "请核对您的预约" in w.say("o_dv_qian", "2")


def test_an_escalated_order_is_assigned_by_a_coordinator_in_chat(world, wechat_plain):
    with world.db.transaction() as s:
        for v in s.scalars(select(Volunteer)):
            v.skills = []  # nobody can be asked
        order = new_order(s, world.clock.now())
        number = order.number
    dispatch.run_due(world, SETTINGS)
    with world.db.transaction() as s:
        assert s.scalar(select(Order.status)) == "escalated"
        vol(s, "KW2026100003").skills = ["08"]
    assert "已将工单" in wechat_plain.say("o_dc_top", f"派单 {number} KW2026100003")
    assert "不在您管理的队伍范围内" in wechat_plain.say("o_dc_gw", f"派单 {number} KW2026100005")  # 北海 is 北苑's
    assert "接单成功" in wechat_plain.say("o_dv_zhao", "接单")
    with world.db.transaction() as s:
        assert s.scalar(select(Order.status)) == "accepted"


def test_words_that_only_start_like_an_answer_are_left_to_other_journeys(world, wechat_plain):
    reply = wechat_plain.say("o_dres", "接孩子放学需要帮忙")
    assert "不是在册志愿者" not in reply
