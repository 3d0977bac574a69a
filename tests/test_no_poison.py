"""No poison pill (issue 28.3): one bad item in a queue the scheduler or the worker drains
is set aside as a dead letter (counted in /metrics and `volbot push status`) and every
other item is applied; a receipt whose MsgID cannot be ours is dropped at intake."""

from __future__ import annotations

import json

import click
import pytest
from click.testing import CliRunner
from sqlalchemy import select, update

import bot.cli  # noqa: F401 - the CLI first: its modules import it
from bot import observability
from bot.commands import pushes as push_commands
from pushes import worker
from pushes.scheduler import run_pass
from rules import dispatch
from rules import receipts as callbacks
from rules.receipts import QUEUE_KEY
from store import dead_letters
from store.models import DeadLetter, Offer, Order, Push, PushReceipt
from tests.pushes_fixtures import drain
from tests.test_dispatch import SETTINGS, new_order
from tests.test_push_pipeline import push, record

DRILL_MSGID = "1" * 33  # what the outside drill sent: one character too long for the column


def sent(svc, key: str, msgid: str, openid: str = "o_push_user1") -> int:
    pid = record(svc, openid=openid, key=key)
    with svc.db.transaction() as s:
        s.execute(update(Push).where(Push.id == pid).values(state="sent", wechat_msgid=msgid))
    return pid


def dead(svc) -> dict[str, int]:
    with svc.db.transaction() as s:
        return dead_letters.counts(s)


def cli(svc, *args) -> str:
    group = click.Group("volbot")
    push_commands.register(group)
    env = {"DATABASE_URL": svc.config.database_url or svc.config.sqlalchemy_url, "REDIS_URL": svc.redis_url,
           "VOLBOT_INSTANCE": str(svc.config.instance_path), "VOLBOT_ENV": "testing"}
    result = CliRunner().invoke(group, list(args), env=env)
    assert result.exit_code == 0, result.output
    return result.output


def queued(msgid, status="success", at="2030-01-09T08:00:00+00:00") -> bytes:
    return json.dumps([msgid, status, at]).encode()


# ---- delivery receipts ------------------------------------------------------------------------

def test_a_receipt_whose_msgid_cannot_be_ours_is_dropped_at_intake_and_counted(svc, wechat_plain):
    good = sent(svc, "intake-good", "9101")
    before = observability.REGISTRY.get_sample_value("volbot_receipts_rejected_total") or 0
    for bad in (DRILL_MSGID, "12ab", ""):
        assert wechat_plain.event("o_push_user1", "TEMPLATESENDJOBFINISH", None, MsgID=bad, Status="success") == ""
    assert wechat_plain.event("o_push_user1", "TEMPLATESENDJOBFINISH", None, MsgID=9101, Status="success") == ""
    assert svc.redis.llen(QUEUE_KEY) == 1  # only the good one was queued
    assert observability.REGISTRY.get_sample_value("volbot_receipts_rejected_total") == before + 3
    run_pass(svc)
    assert push(svc, good).state == "delivered" and dead(svc) == {}
    with svc.db.transaction() as s:  # the direct SQL path (Redis down) refuses it too
        callbacks.record_receipt(s, DRILL_MSGID, "success", svc.clock.now())
        assert s.scalars(select(PushReceipt)).all() == []


def test_one_bad_queued_receipt_is_set_aside_and_every_other_is_applied(svc):
    """The drill: a 33-character MsgID already in the queue (bypassing intake) made every
    pass fail on PostgreSQL's varchar(32) and put the whole batch back, so no receipt after
    it was ever applied. A naive timestamp fails on every database (a poison no intake rule
    knows of); an unreadable item cannot be applied at all."""
    before = sent(svc, "q-before", "9201")
    after = [sent(svc, f"q-after-{i}", str(9300 + i), openid=f"o_push_q{i}") for i in range(5)]
    svc.redis.rpush(QUEUE_KEY, queued("9201"), queued(DRILL_MSGID), queued("9299", at="2030-01-09T08:00:00"),
                    b"\xff\x00 not json", *(queued(str(9300 + i)) for i in range(5)))
    run_pass(svc)
    assert svc.redis.llen(QUEUE_KEY) == 0
    assert [push(svc, p).state for p in [before, *after]] == ["delivered"] * 6
    assert dead(svc) == {"receipts": 3}
    with svc.db.transaction() as s:
        items = sorted(r.item for r in s.scalars(select(DeadLetter)))
    assert any(DRILL_MSGID in i for i in items) and any("\\x00" in i for i in items)
    run_pass(svc)  # set aside for good: not tried again
    assert dead(svc) == {"receipts": 3}

    assert 'volbot_dead_letters{queue="receipts"} 3.0' in observability.render_metrics(svc).decode()
    out = cli(svc, "push", "status")
    assert "dead letters: 3 (receipts 3" in out
    assert DRILL_MSGID in cli(svc, "push", "dead-letters")


def test_receipts_go_back_on_the_list_when_the_database_does_not_answer(svc, monkeypatch):
    sent(svc, "down", "9401")
    svc.redis.rpush(QUEUE_KEY, queued("9401"), queued("9402"))

    def down(*args, **kwargs):
        raise ConnectionError("database down")

    monkeypatch.setattr(callbacks, "record_receipts", down)
    monkeypatch.setattr(dead_letters, "database_answers", lambda services: False)
    with pytest.raises(ConnectionError):
        callbacks.apply_queued_receipts(svc)
    assert svc.redis.llen(QUEUE_KEY) == 2 and dead(svc) == {}  # nothing is the items' fault


def test_a_parked_receipt_that_fails_is_set_aside_and_the_others_are_applied(svc, monkeypatch):
    pids = [sent(svc, f"park-{i}", str(9500 + i), openid=f"o_push_p{i}") for i in range(3)]
    with svc.db.transaction() as s:
        s.add_all(PushReceipt(wechat_msgid=str(9500 + i), status="success", received_at=svc.clock.now())
                  for i in range(3))
    real = callbacks.apply_early_receipt

    def poisoned(session, push_id, msgid, now):
        if msgid == "9501":
            raise ValueError("cannot apply")
        return real(session, push_id, msgid, now)

    monkeypatch.setattr(callbacks, "apply_early_receipt", poisoned)
    assert run_pass(svc)["receipts"] == 2
    assert [push(svc, p).state for p in pids] == ["delivered", "sent", "delivered"]
    assert dead(svc) == {"parked-receipts": 1}
    with svc.db.transaction() as s:
        assert s.scalars(select(PushReceipt.wechat_msgid)).all() == []  # not tried every pass


# ---- the worker ---------------------------------------------------------------------------------

def test_a_push_that_cannot_be_rendered_fails_alone(svc, dispatcher, emulator):
    pids = [record(svc, openid=f"o_push_r{i}", key=f"render-{i}") for i in range(3)]
    with svc.db.transaction() as s:
        s.get(Push, pids[1]).data = ["not", "a", "mapping"]  # written by hand, or by an older release
    run_pass(svc)
    drain(svc)
    rows = [push(svc, p) for p in pids]
    assert [r.state for r in rows] == ["sent", "failed", "sent"]
    assert rows[1].last_error.startswith("bad push: cannot render")
    assert len(emulator.messages()) == 2


def test_an_outcome_that_cannot_be_recorded_does_not_block_its_handful(svc, dispatcher, emulator, monkeypatch):
    pids = [record(svc, openid=f"o_push_o{i}", key=f"outcome-{i}") for i in range(3)]
    real = worker.Dispatcher._record

    def poisoned(self, session, outcome, now):
        if outcome.push.id == pids[1]:
            raise ValueError("cannot record")
        return real(self, session, outcome, now)

    monkeypatch.setattr(worker.Dispatcher, "_record", poisoned)
    run_pass(svc)
    drain(svc)
    assert [push(svc, p).state for p in pids] == ["sent", "sending", "sent"]  # its lease will run out
    assert dead(svc) == {"push-outcomes": 1}


def test_a_msgid_wechat_answers_that_cannot_be_stored_keeps_the_push_sent(svc, dispatcher, monkeypatch):
    pid = record(svc, key="long-msgid")
    monkeypatch.setattr(dispatcher.client, "send_template", lambda *a, **k: DRILL_MSGID)
    run_pass(svc)
    drain(svc)
    row = push(svc, pid)
    assert row.state == "sent" and row.wechat_msgid is None and dead(svc) == {}


# ---- due work -----------------------------------------------------------------------------------

def test_one_order_that_fails_to_dispatch_does_not_stop_the_others(svc, monkeypatch):
    from tests.seeds import apply

    apply(svc, ["dispatch_world"])
    with svc.db.transaction() as s:
        ids = [new_order(s, svc.clock.now()).id for _ in range(3)]
    real = dispatch.offer_next

    def poisoned(session, order, now, settings=None):
        if order.id == ids[0]:
            raise ValueError("cannot offer")
        return real(session, order, now, settings)

    monkeypatch.setattr(dispatch, "offer_next", poisoned)
    assert dispatch.run_due(svc, SETTINGS) == 2
    with svc.db.transaction() as s:
        offered = set(s.scalars(select(Offer.order_id).where(Offer.state == "offered")))
        assert offered == set(ids[1:]) and s.get(Order, ids[0]).status == "submitted"
    assert dead(svc) == {"order-offer": 1}
