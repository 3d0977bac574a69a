"""The push pipeline, end to end against the emulator: SQL row → scheduler → RQ job →
worker → WeChat, exactly once per dedup key whatever goes wrong on the way."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select, update

from pushes.ratelimit import TokenBucket
from pushes.scheduler import run_pass
from pushes.worker import push_queue, send_chunk
from rules.receipts import QUEUE_KEY
from store.models import Follower, Push, PushReceipt
from store.outbox import notify, notify_many
from tests.pushes_fixtures import drain


def record(svc, openid="o_push_user1", key="k1", **extra) -> int:
    with svc.db.transaction() as s:
        push = notify(s, openid=openid, kind="star_level", title="星级志愿者",
                      fields={"number": "KW2026000001", "level": "1星", "hours": "100小时"}, dedup_key=key, **extra)
        return push.id if push else None


def push(svc, push_id) -> Push:
    with svc.db.transaction() as s:
        return s.get(Push, push_id)


def test_a_recorded_push_is_sent_once_with_its_template(svc, dispatcher, emulator):
    pid = record(svc)
    assert record(svc) is None  # same dedup key: not recorded again
    assert run_pass(svc)["queued"] == 1
    drain(svc)
    [sent] = emulator.messages()
    assert sent["openid"] == "o_push_user1" and sent["client_msg_id"] == push(svc, pid).client_msg_id
    assert sent["template_id"] == "volbot-star-level" and sent["data"]["thing2"] == {"value": "1星"}
    row = push(svc, pid)
    assert row.state == "sent" and row.wechat_msgid == str(sent["msgid"]) and row.attempts == 1


def test_a_job_run_twice_sends_once(svc, dispatcher, emulator):
    pid = record(svc)
    run_pass(svc)
    push_queue(svc.redis).enqueue(send_chunk, [pid])  # a duplicate job for the same row
    drain(svc)
    assert len(emulator.messages()) == 1 and len(emulator.calls("template")) == 1
    assert push(svc, pid).state == "sent"


def test_worker_dying_mid_send_is_resent_once_and_deduplicated_by_wechat(svc, dispatcher, api, emulator):
    pid = record(svc)
    run_pass(svc)
    [claimed] = dispatcher.claim([pid])
    # The worker sent the template, then died before recording it.
    api.send_template(claimed.openid, "volbot-star-level", {"thing1": {"value": "x"}},
                      client_msg_id=push(svc, pid).client_msg_id)
    svc.redis.delete(*svc.redis.keys("rq:*"))  # its job went with it
    assert run_pass(svc)["reclaimed"] == 0  # the lease still holds
    svc.clock.advance(seconds=61 + 1)
    assert run_pass(svc)["reclaimed"] == 1
    drain(svc)
    stats = emulator.stats()
    assert stats["templates_accepted"] == 1 and stats["dedup_hits"] == 1
    row = push(svc, pid)
    assert row.state == "sent" and row.attempts == 2 and row.wechat_msgid == str(emulator.messages()[0]["msgid"])


def test_a_lost_attempt_past_wechats_window_is_not_resent(svc, dispatcher, api, emulator):
    pid = record(svc)
    run_pass(svc)
    dispatcher.claim([pid])
    api.send_template("o_push_user1", "volbot-star-level", {"thing1": {"value": "x"}},
                      client_msg_id=push(svc, pid).client_msg_id)
    svc.redis.delete(*svc.redis.keys("rq:*"))
    svc.clock.advance(minutes=11)
    run_pass(svc)
    drain(svc)
    row = push(svc, pid)
    assert row.state == "failed" and "outcome unknown" in row.last_error
    assert len(emulator.calls("template")) == 1


def test_jobs_lost_with_redis_are_queued_again_from_sql(svc, dispatcher, emulator):
    ids = [record(svc, openid=f"o_push_user{i}", key=f"k{i}") for i in range(3)]
    assert run_pass(svc)["queued"] == 3
    svc.redis.flushdb()  # Redis lost: the jobs are gone, the rows say "queued"
    assert run_pass(svc)["requeued"] == 0  # too soon to call them lost
    svc.clock.advance(seconds=31)
    assert run_pass(svc)["requeued"] == 3
    drain(svc)
    assert {m["openid"] for m in emulator.messages()} == {f"o_push_user{i}" for i in range(3)}
    assert all(push(svc, i).state == "sent" for i in ids)


def test_transient_errors_back_off_then_succeed(svc, dispatcher, emulator):
    emulator.fault(endpoint="template", errcode=-1, times=2)
    pid = record(svc)
    run_pass(svc)
    drain(svc)
    first = push(svc, pid)
    assert first.state == "pending" and first.attempts == 1 and first.last_error.startswith("-1")
    delay1 = first.due_at - svc.clock.now()
    assert timedelta(seconds=7) < delay1 <= timedelta(seconds=12)
    assert run_pass(svc)["queued"] == 0  # not due yet
    svc.clock.advance(seconds=13)
    run_pass(svc)
    drain(svc)
    second = push(svc, pid)
    # The second backoff is longer, counted from the attempt (not from now: a slow drain on a
    # loaded machine would eat into it).
    assert second.attempts == 2 and second.due_at - second.claimed_at > timedelta(seconds=15)
    svc.clock.advance(seconds=30)
    run_pass(svc)
    drain(svc)
    assert push(svc, pid).state == "sent" and len(emulator.messages()) == 1


def test_giving_up_after_max_attempts(svc, dispatcher, emulator):
    emulator.fault(endpoint="template", errcode=-1, times=None)
    pid = record(svc)
    for _ in range(4):
        run_pass(svc)
        drain(svc)
        svc.clock.advance(minutes=10)
    row = push(svc, pid)
    assert row.state == "failed" and row.attempts == 4 and "gave up" in row.last_error


def test_permanent_errors_stop_and_mark_the_follower(svc, dispatcher, emulator):
    with svc.db.transaction() as s:
        s.add(Follower(openid="o_push_left"))
    emulator.admin("users", openid="o_push_left", following=False)
    first = record(svc, openid="o_push_left", key="a")
    run_pass(svc)
    drain(svc)
    assert push(svc, first).state == "failed"
    with svc.db.transaction() as s:
        assert s.scalar(select(Follower.push_blocked).where(Follower.openid == "o_push_left")).startswith("43004")
    second = record(svc, openid="o_push_left", key="b")
    run_pass(svc)
    drain(svc)
    assert push(svc, second).state == "failed" and len(emulator.calls("template")) == 1  # not tried again


def test_daily_quota_waits_for_the_next_day(svc, dispatcher, emulator):
    emulator.admin("settings", template_daily_quota=1)
    ids = [record(svc, openid=f"o_push_user{i}", key=f"q{i}") for i in range(3)]
    run_pass(svc)
    drain(svc)
    rows = [push(svc, i) for i in ids]
    assert [r.state for r in rows] == ["sent", "pending", "pending"]
    assert len(emulator.calls("template")) == 2  # the rest of the chunk did not try
    local = rows[1].due_at.astimezone(__import__("zoneinfo").ZoneInfo("Asia/Shanghai"))
    assert (local.hour, local.minute) == (0, 5) and rows[1].attempts == 0


def test_delivery_receipts_update_state_and_block_refusers(svc, dispatcher, emulator, base_url):
    emulator.admin("settings", callback_url=base_url + "/wechat", callback_delay_ms=0)
    emulator.admin("users", openid="o_push_refuser", refuses=True)
    with svc.db.transaction() as s:
        s.add(Follower(openid="o_push_refuser"))
    ok = record(svc, openid="o_push_user1", key="r1")
    refused = record(svc, openid="o_push_refuser", key="r2")
    run_pass(svc)
    drain(svc)
    emulator.wait_callbacks()
    run_pass(svc)  # applies any receipt that beat the worker's commit
    assert push(svc, ok).state == "delivered"
    assert push(svc, refused).state == "failed" and "user block" in push(svc, refused).last_error
    with svc.db.transaction() as s:
        assert s.scalar(select(Follower.push_blocked).where(Follower.openid == "o_push_refuser"))


def test_receipts_skip_the_turn_and_the_scheduler_applies_them_in_bulk(svc, wechat):
    delivered, also, early = (record(svc, key="fast1"), record(svc, openid="o_push_user3", key="fast3"),
                              record(svc, openid="o_push_user2", key="fast2"))
    with svc.db.transaction() as s:
        s.execute(update(Push).where(Push.id == delivered).values(state="sent", wechat_msgid="9001"))
        s.execute(update(Push).where(Push.id == also).values(state="sending", wechat_msgid="9004"))
        s.execute(update(Push).where(Push.id == early).values(state="sending"))
    for _ in range(2):  # WeChat's retry of a receipt is the same receipt again: harmless
        assert wechat.event("o_push_user1", "TEMPLATESENDJOBFINISH", None, MsgID=9001, Status="success") == ""
    assert wechat.event("o_push_user3", "TEMPLATESENDJOBFINISH", None, MsgID=9004, Status="success") == ""
    assert wechat.event("o_push_user2", "TEMPLATESENDJOBFINISH", None, MsgID=9002, Status="success") == ""
    # Answered without a turn: no dedup claim, no user lock, nothing written to SQL yet.
    assert svc.redis.keys("volbot:dedup:*") == [] and svc.redis.keys("volbot:lock:*") == []
    assert push(svc, delivered).state == "sent" and svc.redis.llen(QUEUE_KEY) == 4
    assert run_pass(svc, recover=False)["receipts_queued"] == 3
    assert [push(svc, p).state for p in (delivered, also)] == ["delivered", "delivered"]
    assert svc.redis.llen(QUEUE_KEY) == 0
    # 9002 beat the worker's "sent" commit: parked, applied by the pass after the push has it.
    with svc.db.transaction() as s:
        assert s.get(PushReceipt, "9002").status == "success"
        s.execute(update(Push).where(Push.id == early).values(state="sent", wechat_msgid="9002"))
    assert run_pass(svc)["receipts"] == 1
    assert push(svc, early).state == "delivered"


def test_a_receipt_redis_refuses_is_recorded_in_sql_at_once(svc, wechat_plain, monkeypatch):
    import bot.pipeline

    def refused(*args, **kwargs):
        raise ConnectionError("redis down")

    monkeypatch.setattr(bot.pipeline, "queue_receipt", refused)
    pid = record(svc, key="direct")
    with svc.db.transaction() as s:
        s.execute(update(Push).where(Push.id == pid).values(state="sent", wechat_msgid="9003"))
    assert wechat_plain.event("o_push_user1", "TEMPLATESENDJOBFINISH", None, MsgID=9003,
                              Status="failed:user block") == ""
    assert push(svc, pid).state == "failed"


def test_fan_out_records_in_bulk_and_skips_known_keys(svc):
    rows = [dict(openid=f"o_fan_{i:05d}", kind="bus_visit", title="志愿巴士", fields={"community": "A"},
                 dedup_key=f"fan:{i}", batch="fan") for i in range(2500)]
    with svc.db.transaction() as s:
        assert notify_many(s, rows) == 2500
    with svc.db.transaction() as s:
        assert notify_many(s, rows + rows[:1]) == 0


def test_token_bucket_limits_rate_across_clients(svc):
    import time

    a = TokenBucket(svc.redis, "test", rate=20, burst=1)
    b = TokenBucket(svc.redis, "test", rate=20, burst=1)
    started = time.monotonic()
    for i in range(10):
        assert (a if i % 2 else b).take(timeout=5)
    assert time.monotonic() - started >= 0.4  # 10 tokens at 20/s with a burst of 1


def test_rows_of_a_job_whose_worker_died_are_queued_again(svc, dispatcher, emulator):
    import time

    from rq.job import Job, JobStatus

    from pushes.worker import JOB_TTL, PushWorker

    ids = [record(svc, openid=f"o_push_user{i}", key=f"d{i}") for i in range(3)]
    run_pass(svc)
    [job_id] = {push(svc, i).job_id for i in ids}
    queue = push_queue(svc.redis)
    # A worker took the job (RQ's own bookkeeping of a start) and was SIGKILLed before
    # claiming any row: its registry entry is never refreshed again.
    worker = PushWorker([queue], connection=svc.redis, name="doomed")
    worker.register_birth()
    job = Job.fetch(job_id, connection=svc.redis)
    queue.remove(job_id)
    worker.prepare_execution(job)
    job.set_status(JobStatus.STARTED)
    registry = queue.started_job_registry
    [entry] = svc.redis.zrange(registry.key, 0, -1, withscores=True)
    assert entry[1] <= time.time() + JOB_TTL + 1
    assert run_pass(svc)["requeued"] == 0  # still within its heartbeat TTL: alive as far as we know
    svc.redis.zadd(registry.key, {entry[0]: time.time() - 1})  # JOB_TTL later
    assert run_pass(svc)["requeued"] == 3
    assert Job.fetch(job_id, connection=svc.redis).get_status() == JobStatus.FAILED  # by RQ's cleanup
    drain(svc)
    assert {m["openid"] for m in emulator.messages()} == {f"o_push_user{i}" for i in range(3)}
