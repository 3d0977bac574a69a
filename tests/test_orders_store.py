"""The orders store: numbers per local day (unique under concurrent transactions), the state
rules, the history, pushes to the resident, and erasing personal data."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select

from rules import orders as store
from store.models import Follower, Order, OrderEvent, Push
from tests.seeds.orders import place_order, resident

# 2026-11-28 15:59 UTC is 23:59 in Shanghai; a minute later it is the 29th there.
LATE = datetime(2026, 11, 28, 15, 59, tzinfo=timezone.utc)
STAFF = store.Actor("coordinator", 7)


def test_numbers_count_per_local_day(svc):
    with svc.db.transaction() as s:
        assert store.next_number(s, LATE) == "D20261128-0001"
        assert store.next_number(s, LATE) == "D20261128-0002"
        assert store.next_number(s, LATE + timedelta(minutes=1)) == "D20261129-0001"
        assert store.next_number(s, LATE - timedelta(hours=8)) == "D20261128-0003"


def test_concurrent_transactions_never_share_a_number(svc):
    """Threads, each with its own transaction, all creating orders at the same moment."""
    with svc.db.transaction() as s:
        followers = [resident(s, f"o_conc_{i}").id for i in range(12)]
    start = threading.Barrier(len(followers))
    numbers: list[str] = []
    errors: list[BaseException] = []

    def make(follower_id):
        try:
            start.wait()
            with svc.db.transaction() as s:
                f = s.get(Follower, follower_id)
                numbers.append(place_order(s, f, now=LATE).number)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=make, args=(fid,)) for fid in followers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert sorted(numbers) == [f"D20261128-{i:04d}" for i in range(1, 13)]
    with svc.db.transaction() as s:
        assert s.scalar(select(func.count()).select_from(Order)) == 12


def test_same_form_token_gives_the_same_order(svc):
    from menus.catalog import load

    sub = load().sub("08-01")
    with svc.db.transaction() as s:
        f = resident(s, "o_token")
        kwargs = dict(follower=f, sub=sub, category_name="便民维修", description="水龙头滴水",
                      address="樱园小区1号楼", phone="13800138000", now=LATE, form_token="tok-1",
                      preferred=store.Preferred(LATE.date() + timedelta(days=1), "am"))
        first, created = store.create_order(s, **kwargs)
        again, created_again = store.create_order(s, **kwargs)
    assert created and not created_again and first.id == again.id


def test_transitions_are_checked_and_recorded(svc):
    with svc.db.transaction() as s:
        f = resident(s, "o_states")
        order = place_order(s, f, now=LATE)
        with pytest.raises(store.OrderError):
            store.transition(s, order, "completed", actor=STAFF, now=LATE)
        for to in ("offered", "submitted", "accepted", "in_service", "completed", "confirmed"):
            store.transition(s, order, to, actor=STAFF, now=LATE, reason=f"to {to}")
        with pytest.raises(store.OrderError):
            store.cancel_order(s, order, actor=store.Actor("resident", f.id), reason="晚了", now=LATE)
        store.rate_order(s, order, actor=store.Actor("resident", f.id), stars=4, comment="很及时", now=LATE)
        events = s.scalars(select(OrderEvent).where(OrderEvent.order_id == order.id).order_by(OrderEvent.id)).all()
        assert [(e.from_status, e.to_status) for e in events] == [
            (None, "submitted"), ("submitted", "offered"), ("offered", "submitted"),
            ("submitted", "accepted"), ("accepted", "in_service"), ("in_service", "completed"),
            ("completed", "confirmed"), ("confirmed", "rated")]
        assert events[1].actor_kind == "coordinator" and events[1].actor_id == 7
        assert events[-1].actor_kind == "resident" and events[-1].reason == "4星"
        assert order.status == "rated" and order.rating == 4 and order.closed_at == LATE
        with pytest.raises(store.OrderError):
            store.transition(s, order, "submitted", actor=STAFF, now=LATE)
        with pytest.raises(ValueError):
            store.transition(s, order, "teleported", actor=STAFF, now=LATE)


def test_every_state_is_in_the_transition_table():
    assert set(store.TRANSITIONS) == set(store.STATES) == set(store.SHORT_STATES)
    assert all(len(v) <= 5 for v in store.SHORT_STATES.values())
    for targets in store.TRANSITIONS.values():
        assert set(targets) <= set(store.STATES)
    for closed in ("rated", "cancelled", "expired"):
        assert store.TRANSITIONS[closed] == ()
    assert store.CANCELLABLE.isdisjoint({"in_service", "completed", "confirmed", "rated"})


def test_cancel_and_rate_rules(svc):
    with svc.db.transaction() as s:
        f = resident(s, "o_rules")
        me = store.Actor("resident", f.id)
        waiting = place_order(s, f, now=LATE)
        store.cancel_order(s, waiting, actor=me, reason="不需要了", now=LATE)
        assert waiting.status == "cancelled" and waiting.cancel_reason == "不需要了"
        serving = place_order(s, f, status="in_service", now=LATE)
        with pytest.raises(store.OrderError, match="不能取消"):
            store.cancel_order(s, serving, actor=me, reason="x", now=LATE)
        with pytest.raises(store.OrderError, match="服务完成后才能评价"):
            store.rate_order(s, serving, actor=me, stars=5, comment=None, now=LATE)
        done = place_order(s, f, status="completed", now=LATE)
        for stars in (0, 6):
            with pytest.raises(store.OrderError):
                store.rate_order(s, done, actor=me, stars=stars, comment=None, now=LATE)
        store.rate_order(s, done, actor=me, stars=5, comment=None, now=LATE)
        assert done.status == "rated"


def test_staff_changes_are_pushed_to_the_resident_once(svc):
    with svc.db.transaction() as s:
        f = resident(s, "o_pushed")
        order = place_order(s, f, now=LATE)
        store.cancel_order(s, order, actor=store.Actor("resident", f.id), reason="不需要了", now=LATE)
        other = place_order(s, f, now=LATE)
        store.transition(s, other, "accepted", actor=store.Actor("volunteer", 3), now=LATE)
        pushes = s.scalars(select(Push).where(Push.openid == "o_pushed")).all()
    # The resident's own cancel is answered in the chat; the volunteer's accept is pushed.
    assert len(pushes) == 1
    assert pushes[0].kind == "order_update"
    assert pushes[0].data["订单号"] == other.number and pushes[0].data["状态"] == "已接单"


def test_no_push_to_someone_who_left(svc):
    with svc.db.transaction() as s:
        f = resident(s, "o_left")
        order = place_order(s, f, now=LATE)
        f.subscribed = False
        store.transition(s, order, "accepted", actor=STAFF, now=LATE)
        assert s.scalar(select(func.count()).select_from(Push)) == 0


def test_erasure_closed_now_open_when_it_closes(svc):
    with svc.db.transaction() as s:
        f = resident(s, "o_erase")
        closed = place_order(s, f, status="completed", now=LATE)
        cancelled = place_order(s, f, status="cancelled", now=LATE)
        open_ = place_order(s, f, status="accepted", now=LATE)
        assert store.erase_for_follower(s, f.id, LATE) == (2, 1)
        for o in (closed, cancelled):
            assert (o.phone, o.address, o.description, o.lat, o.erased_at) == (None, None, None, None, LATE)
            assert o.sub_code and o.status  # statistics stay
        # The open order keeps its contact for the volunteer on the way...
        assert open_.phone == "13800138000" and open_.erase_on_close
        store.transition(s, open_, "in_service", actor=STAFF, now=LATE)
        assert open_.phone == "13800138000"
        # ...and loses it the moment it closes.
        store.transition(s, open_, "completed", actor=STAFF, now=LATE + timedelta(hours=1))
        assert open_.phone is None and open_.address is None and not open_.erase_on_close
        assert open_.erased_at == LATE + timedelta(hours=1)


def test_communities_near_and_by_name(svc):
    from tests import seeds
    from tests.seeds.orders import NEAR_YINGYUAN

    seeds.apply(svc, ["order_communities"])
    with svc.db.transaction() as s:
        near = store.communities_near(s, *NEAR_YINGYUAN)
        assert [c.name for c, _ in near] == ["樱园社区", "金都社区", "东方社区"]
        assert near[0][1] < 100
        assert [c.name for c in store.communities_named(s, "樱园")] == ["樱园社区"]
        assert [c.name for c in store.communities_named(s, "金都社区5号楼")] == ["金都社区"]
        assert store.communities_named(s, "不存在的地方") == []
