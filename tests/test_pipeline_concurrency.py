"""Retries and the per-user lock under real concurrency, over HTTP: threads post at once,
a test-only command (tests/protocol_support.py) records each run as an SQL row."""

from __future__ import annotations

import threading
import time

import pytest
import requests

from tests.protocol_support import SLEEP, counter_runs, install_counter, live, with_protocol


@pytest.fixture
def counter(svc):
    install_counter()
    SLEEP["seconds"] = 0.3
    yield
    SLEEP["seconds"] = 0.3


def send(wechat, fields):
    """Post with a connection of its own (a requests.Session is not for sharing)."""
    return wechat.sender.post(requests, wechat.url, fields, wechat.encrypt)


def run_threads(fn, n: int) -> list:
    barrier = threading.Barrier(n)
    results: list = [None] * n

    def worker(i):
        barrier.wait()
        results[i] = fn(i)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(30)
    return results


def test_eight_copies_of_one_push_at_once(wechat, svc, counter):
    fields = wechat.sender.text("o_dedup", "计数")
    results = run_threads(lambda i: send(wechat, fields), 8)
    assert all(r.status == 200 for r in results), [(r.status, r.body) for r in results]
    replies = {r.text for r in results}
    assert replies == {f"已计数 {fields['MsgId']}"}
    assert len(counter_runs(svc)) == 1


def test_retry_after_the_reply_gets_the_same_reply(wechat, svc, counter):
    fields = wechat.sender.text("o_retry", "计数")
    first = wechat.send(fields)
    svc.clock.advance(seconds=5)  # WeChat retries 5 s later, with a fresh query signature
    again = wechat.send(fields)
    assert first.text == again.text == f"已计数 {fields['MsgId']}"
    assert len(counter_runs(svc)) == 1
    key = f"volbot:dedup:m:{fields['MsgId']}"
    assert svc.redis.ttl(key) >= 300  # remembered for at least 5 minutes


def test_retry_while_the_first_is_still_running_waits_for_its_reply(wechat_plain, svc, counter):
    SLEEP["seconds"] = 1.5
    fields = wechat_plain.sender.text("o_wait", "计数")
    out = {}
    first = threading.Thread(target=lambda: out.setdefault("first", send(wechat_plain, fields)))
    first.start()
    time.sleep(0.5)
    out["retry"] = wechat_plain.send(fields)
    first.join(10)
    assert out["retry"].text == out["first"].text == f"已计数 {fields['MsgId']}"
    assert len(counter_runs(svc)) == 1


def test_event_retries_are_deduplicated_by_sender_time_event_key(wechat, svc, counter):
    click = wechat.sender.event("o_click", "CLICK", "TEST_COUNTER")
    first, again = wechat.send(click), wechat.send(dict(click))
    assert first.text == again.text and first.text.startswith("已计数")
    assert len(counter_runs(svc)) == 1
    later = dict(click, CreateTime=click["CreateTime"] + 1)  # a second tap: not a retry
    assert wechat.send(later).status == 200
    assert len(counter_runs(svc)) == 2


def test_messages_from_one_user_never_interleave(wechat, svc, counter):
    SLEEP["seconds"] = 0.2
    results = run_threads(lambda i: send(wechat, wechat.sender.text("o_serial", "计数")), 5)
    assert all(r.status == 200 and r.text.startswith("已计数") for r in results), [r.text for r in results]
    runs = sorted((start, end) for _, start, end in counter_runs(svc))
    assert len(runs) == 5
    for (_, end), (start, _) in zip(runs, runs[1:]):
        assert start >= end, runs  # each run began after the previous one ended


def test_deadline_passes_then_the_retry_gets_the_real_reply(svc, counter):
    """The first delivery answers busy at the deadline; the turn finishes anyway and the
    retry gets its reply without running it again."""
    from tests.conftest import WeChat

    SLEEP["seconds"] = 2.0
    quick = with_protocol(svc, reply_deadline=1.0)
    with live(quick) as url:
        chat = WeChat(url, svc)
        fields = chat.sender.text("o_slow", "计数")
        started = time.monotonic()
        first = chat.send(fields)
        assert time.monotonic() - started < 1.5
        assert first.text == "系统繁忙，请稍后再试。"
        time.sleep(1.5)
        again = chat.send(fields)
        assert again.text == f"已计数 {fields['MsgId']}"
    assert len(counter_runs(svc)) == 1


def test_a_claim_whose_worker_died_expires_soon(svc):
    """A delivery that crashed mid-turn leaves a PENDING claim; it lives 30 s, not the full
    dedup TTL, so WeChat's later retries can run the turn."""
    from store.ephemeral import Dedup, Deliveries, StateStore, UserLock

    dedup = Dedup(svc.redis, svc.config.dedup_ttl)
    opened = Deliveries(svc.redis, dedup, StateStore(svc.redis)).open("m:1", UserLock(svc.redis, "o_x"))
    assert opened.claimed and opened.locked and opened.state == {"version": 0}
    assert 0 < svc.redis.ttl("volbot:dedup:m:1") <= Dedup.PENDING_TTL
    assert 0 < svc.redis.pttl("volbot:lock:o_x") <= 10_000


def test_closing_a_delivery_saves_a_state_handed_to_it_by_compare_and_set(svc):
    """A turn that touched no SQL hands its state to `close`: saved, lock released and reply
    kept in one script; a state that another delivery moved on meanwhile is not saved."""
    from store.ephemeral import Dedup, Deliveries, StateStore, UserLock

    states = StateStore(svc.redis)
    deliveries = Deliveries(svc.redis, Dedup(svc.redis, svc.config.dedup_ttl), states)
    lock = UserLock(svc.redis, "o_close")
    opened = deliveries.open("m:1", lock)
    assert deliveries.close("m:1", lock, b'{"text":"1"}', dict(opened.state, step="room")) is True
    assert states.load("o_close") == {"version": 1, "step": "room"}
    assert svc.redis.get("volbot:lock:o_close") is None
    assert svc.redis.get("volbot:dedup:m:1") == b'{"text":"1"}'

    lock = UserLock(svc.redis, "o_close")
    assert deliveries.open("m:2", lock).locked
    stale = {"version": 0, "step": "time"}  # read before the saved version 1
    assert deliveries.close("m:2", lock, b'{"text":"2"}', stale) is False
    assert states.load("o_close") == {"version": 1, "step": "room"}
    assert svc.redis.get("volbot:lock:o_close") is None
    assert svc.redis.get("volbot:dedup:m:2") == b'{"text":"2"}'


def _calls(svc, *commands: str) -> int:
    """How many of `commands` the server has run (commands inside a script count too)."""
    stats = svc.redis.info("commandstats")
    return sum(stats.get(f"cmdstat_{c}", {}).get("calls", 0) for c in commands)


def test_form_steps_without_sql_take_two_redis_round_trips_and_keep_their_state(wechat_plain, svc):
    """Open (claim, lock, state) and close (state, lock, reply): the state goes with the
    close when the turn opened no SQL transaction, and the next step sees it."""
    from store.ephemeral import StateStore

    user = "o_trips"
    wechat_plain.send(wechat_plain.sender.event(user, "subscribe", ""))
    wechat_plain.send(wechat_plain.sender.event(user, "CLICK", "ORDER"))
    trips = []
    for said, expected in (("8", "【便民维修】请选择服务项目"), ("1", "请简单说说需要什么帮助"),
                           ("卫生间水管接头漏水，需要换个阀门", "请输入服务地址")):
        before = _calls(svc, "evalsha", "eval")
        reply = wechat_plain.send(wechat_plain.sender.text(user, said))
        trips.append(_calls(svc, "evalsha", "eval") - before)
        assert expected in reply.text
    assert trips == [2, 2, 2]  # three before: the state had a script of its own
    state = StateStore(svc.redis).load(user)
    assert state["answers"]["need"].startswith("卫生间水管接头漏水")
