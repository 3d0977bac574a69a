"""The time bank: a double-entry ledger funded only by approved hours, never negative,
immutable, audited. Randomised earn/spend/reverse sequences keep the audit green (the
family, gift, donation, grant and cap rules: tests/test_timebank_trust.py)."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from rules import timebank, volunteering
from rules import timebank_family as family
from rules.timebank import BankRules, TimeBankError
from rules.volunteering import Rules
from store.models import Follower, HourRecord, TimeEntry, TimeTransaction, Volunteer
from store.models.timebank import ImmutableLedger
from tests import seeds
from tests.conftest import reset_data
from tests.seeds.volunteers import add_volunteer, follower, id_number

NOW = datetime(2026, 11, 28, 8, 0, tzinfo=timezone.utc)
CAP = 600
RULE = Rules(bank=BankRules(cap_minutes=CAP))


def make_volunteers(svc, n=2) -> list[int]:
    seeds.apply(svc, ["vol_teams"])
    with svc.db.transaction() as s:
        ids = []
        for i in range(n):
            v = add_volunteer(s, f"o_tb_{i}", f"时间{i}", f"KW2026000{800 + i}", "VT-DF", id_number(order=f"{800 + i}"))
            ids.append(v.id)
        fam = follower(s, "o_tb_family")
        link_family(s, s.get(Volunteer, ids[0]), fam, "女儿")
        follower(s, "o_tb_stranger")
    return ids


def link_family(s, volunteer, member, relation="", now=NOW):
    """A family link as chat makes it: the volunteer's invite code, accepted by the member."""
    return family.accept_invite(s, family.invite(s, volunteer, relation, now).code, member, now)


def earn(s, vid: int, minutes: int, n: int, approve: bool = True) -> HourRecord:
    v = s.get(Volunteer, vid)
    start = NOW - timedelta(days=400) + timedelta(hours=3 * n)
    r = volunteering.record_hours(s, v, source="activity", source_ref=f"t:{n}", started_at=start,
                                  ended_at=start + timedelta(minutes=minutes), now=NOW)
    if approve:
        volunteering.decide_hours(s, [r.id], approve=True, now=NOW, coordinator=None, actor="test", rule=RULE)
    return r


def payer(s, vid: int, who: str) -> Follower:
    if who == "self":
        return s.get(Volunteer, vid).follower
    return s.scalar(select(Follower).where(Follower.openid == f"o_tb_{who}"))


OPS = st.lists(st.one_of(
    st.tuples(st.just("earn"), st.integers(0, 1), st.integers(1, 300)),
    st.tuples(st.just("spend"), st.integers(0, 1), st.integers(1, 400), st.sampled_from(["self", "family", "stranger"])),
    st.tuples(st.just("reverse"), st.integers(0, 50)),
), min_size=1, max_size=25)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=OPS)
def test_random_sequences_keep_the_ledger_true(services, ops):
    reset_data(services)
    vids = make_volunteers(services)
    model = {vid: 0 for vid in vids}
    posted: list[tuple[int, int, int]] = []  # (tx id, volunteer id, signed minutes for the volunteer)
    reversed_: set[int] = set()
    for n, op in enumerate(ops):
        try:
            with services.db.transaction() as s:
                if op[0] == "earn":
                    vid = vids[op[1]]
                    r = earn(s, vid, op[2], n)
                    # Above the cap the excess goes on to the pool, never more than the deposit
                    # brought (a reversed spend can leave a balance above the cap).
                    over = max(0, min(op[2], model[vid] + op[2] - CAP))
                    txs = s.scalars(select(TimeTransaction).where(TimeTransaction.hour_record_id == r.id)
                                    .order_by(TimeTransaction.id)).all()
                    assert [t.kind for t in txs] == (["deposit", "overflow"] if over else ["deposit"])
                    posted.append((txs[0].id, vid, op[2]))
                    if over:
                        posted.append((txs[1].id, vid, -over))
                    model[vid] += op[2] - over
                elif op[0] == "spend":
                    vid, minutes, who = vids[op[1]], op[2], op[3]
                    allowed = who == "self" or (who == "family" and vid == vids[0])
                    try:
                        tx = timebank.spend_for_order(s, s.get(Volunteer, vid), minutes, order_ref=f"ord-{n}",
                                                      payer=payer(s, vid, who), now=NOW)
                    except TimeBankError:
                        assert not allowed or model[vid] < minutes
                        raise
                    assert allowed and model[vid] >= minutes
                    posted.append((tx.id, vid, -minutes))
                    model[vid] -= minutes
                else:
                    if not posted:
                        continue
                    tx_id, vid, signed = posted[op[1] % len(posted)]
                    try:
                        timebank.reverse(s, s.get(TimeTransaction, tx_id), actor="test", reason="更正", now=NOW)
                    except TimeBankError:
                        assert tx_id in reversed_ or model[vid] - signed < 0
                        raise
                    assert tx_id not in reversed_ and model[vid] - signed >= 0
                    reversed_.add(tx_id)
                    model[vid] -= signed
        except TimeBankError:
            pass  # refused: the transaction rolled back as a whole
        with services.db.transaction() as s:
            for vid in vids:
                assert timebank.balance(s, s.get(Volunteer, vid)) == model[vid] >= 0
    with services.db.transaction() as s:
        report = timebank.audit(s)
        assert report.ok, report.problems


def test_deposit_only_for_approved_hours_and_once(svc):
    [vid, _] = make_volunteers(svc)
    with svc.db.transaction() as s:
        r = earn(s, vid, 90, 0, approve=False)
        with pytest.raises(TimeBankError):
            timebank.deposit_for_hours(s, r, actor="test", now=NOW, rules=BankRules())
        volunteering.decide_hours(s, [r.id], approve=True, now=NOW, coordinator=None, actor="test")
        assert timebank.deposit_for_hours(s, r, actor="test", now=NOW, rules=BankRules()) is None  # again: no-op
        assert timebank.balance(s, s.get(Volunteer, vid)) == 90


def test_rate_and_cap(svc):
    [vid, _] = make_volunteers(svc)
    half = Rules(bank=BankRules(rate_numerator=1, rate_denominator=2, cap_minutes=100))
    with svc.db.transaction() as s:
        for n, minutes in enumerate((120, 120)):
            start = NOW - timedelta(days=10 - n)
            r = volunteering.record_hours(s, s.get(Volunteer, vid), source="activity", started_at=start,
                                          ended_at=start + timedelta(minutes=minutes), now=NOW)
            volunteering.decide_hours(s, [r.id], approve=True, now=NOW, coordinator=None, rule=half)
        assert timebank.balance(s, s.get(Volunteer, vid)) == 100  # 60 + 40 (capped)
        reasons = [t.reason for t in s.scalars(select(TimeTransaction).order_by(TimeTransaction.id))]
        assert "存储上限" in reasons[-1]
        assert timebank.audit(s).ok


def test_entries_are_immutable_and_tampering_is_found(svc):
    [vid, _] = make_volunteers(svc)
    with svc.db.transaction() as s:
        earn(s, vid, 60, 0)
    with pytest.raises(ImmutableLedger):
        with svc.db.transaction() as s:
            s.scalar(select(TimeEntry)).minutes = 6000
    with pytest.raises(ImmutableLedger):
        with svc.db.transaction() as s:
            s.delete(s.scalar(select(TimeTransaction)))
    # Someone edits the table behind the application's back: the audit says so.
    with svc.db.transaction() as s:
        s.execute(TimeEntry.__table__.update().where(TimeEntry.minutes == 60).values(minutes=600))
        problems = timebank.audit(s).problems
        assert any("balance 60 != entries 600" in p for p in problems)
        assert any("sum to 540" in p for p in problems)


def test_reverse_needs_a_reason_and_cannot_overdraw(svc):
    [vid, _] = make_volunteers(svc)
    with svc.db.transaction() as s:
        r = earn(s, vid, 60, 0)
        v = s.get(Volunteer, vid)
        timebank.spend_for_order(s, v, 50, order_ref="D1", payer=v.follower, now=NOW)
        deposit = s.scalar(select(TimeTransaction).where(TimeTransaction.hour_record_id == r.id))
        with pytest.raises(TimeBankError, match="原因"):
            timebank.reverse(s, deposit, actor="test", reason=" ", now=NOW)
        with pytest.raises(TimeBankError, match="余额不足"):
            timebank.reverse(s, deposit, actor="test", reason="误录", now=NOW)
        with pytest.raises(TimeBankError, match="大于零"):
            timebank.spend_for_order(s, v, 0, order_ref="D2", payer=v.follower, now=NOW)
        assert timebank.spend_for_order(s, v, 50, order_ref="D1", payer=v.follower, now=NOW) is None  # paid already


def test_concurrent_spends_never_overdraw(svc):
    [vid, _] = make_volunteers(svc)
    with svc.db.transaction() as s:
        earn(s, vid, 100, 0)
    barrier = threading.Barrier(4)
    results: list[str] = []

    def spend(i):
        barrier.wait(timeout=10)
        try:
            with svc.db.transaction() as s:
                v = s.get(Volunteer, vid)
                timebank.spend_for_order(s, v, 40, order_ref=f"P{i}", payer=v.follower, now=NOW)
            results.append("paid")
        except TimeBankError:
            results.append("refused")

    threads = [threading.Thread(target=spend, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["paid", "paid", "refused", "refused"]
    with svc.db.transaction() as s:
        assert timebank.balance(s, s.get(Volunteer, vid)) == 20 and timebank.audit(s).ok


def test_cli_family_statement_reverse_audit(svc, tmp_path):
    from click.testing import CliRunner

    from bot.cli import main as volbot
    from tests.test_teams import cli_env

    [vid, _] = make_volunteers(svc)
    with svc.db.transaction() as s:
        earn(s, vid, 90, 0)
        number = s.get(Volunteer, vid).number
        deposit = s.scalar(select(TimeTransaction.id))
        link_family(s, s.get(Volunteer, vid), follower(s, "o_tb_father"), "父亲")
    runner, env = CliRunner(), cli_env(svc, tmp_path)
    out = runner.invoke(volbot, ["timebank", "family", number], env=env)
    assert out.exit_code == 0 and "父亲" in out.output and "live" in out.output, out.output
    with svc.db.transaction() as s:
        father = s.scalar(select(Follower).where(Follower.openid == "o_tb_father"))
        timebank.spend_for_order(s, s.get(Volunteer, vid), 30, order_ref="D9", payer=father, now=NOW)
    out = runner.invoke(volbot, ["timebank", "statement", number], env=env)
    assert "balance 60 min" in out.output and "\t支出\t-30\t= 60" in out.output and "\t存入\t+90\t= 90" in out.output
    out = runner.invoke(volbot, ["timebank", "reverse", str(deposit), "--reason", "误录"], env=env)
    assert out.exit_code != 0 and "余额不足" in out.output  # 60 left, 90 to take back
    out = runner.invoke(volbot, ["timebank", "audit"], env=env)
    assert out.exit_code == 0 and "OK" in out.output
