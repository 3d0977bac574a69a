"""A time bank residents trust (issue 26): family links, gifts, donations, pool grants
approved one level up, nothing lost at the cap, the district's rules as settings, the
passbook, and no movement ever half-done.

The state machine plays random earns, spends, gifts, donations, grants, cap overflows and
reversals, some from several threads at once, against a model of every balance, and
checks the ledger after every step (on PostgreSQL too when TEST_DATABASE_URL is set).
"""

from __future__ import annotations

import threading
from datetime import date, datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test
from sqlalchemy import func, select

from bot.config import ConfigError, load_config
from rules import timebank, volunteering
from rules import timebank_family as family
from rules import timebank_pool as pool
from rules.timebank import BankRules, Policy, TimeBankError
from rules.volunteering import Rules
from store.models import (
    Coordinator,
    Follower,
    HourRecord,
    PoolGrant,
    Push,
    TimeAccount,
    TimeBankFamily,
    TimeEntry,
    TimeTransaction,
    Volunteer,
)
from store.models.timebank import ISSUED, POOL
from tests import seeds
from tests.conftest import reset_data

NOW = datetime(2026, 11, 28, 8, 0, tzinfo=timezone.utc)
CAP = 300
BANK = BankRules(cap_minutes=CAP)
RULE = Rules(bank=BANK)
LI, WANG, QIAN = "KW2026100001", "KW2026100002", "KW2026100004"


# ---- helpers ------------------------------------------------------------------------------

def world(svc) -> None:
    reset_data(svc)
    seeds.apply(svc, ["dispatch_world"])


def vol(s, number: str) -> Volunteer:
    return s.scalar(select(Volunteer).where(Volunteer.number == number))


def fol(s, openid: str) -> Follower:
    return s.scalar(select(Follower).where(Follower.openid == openid))


def coord(s, openid: str) -> Coordinator:
    return s.scalar(select(Coordinator).join(Follower, Follower.id == Coordinator.follower_id)
                    .where(Follower.openid == openid))


def link(s, volunteer: Volunteer, member: Follower, relation: str = "父亲", now=NOW) -> TimeBankFamily:
    """A family link as chat makes it: the volunteer's code, accepted by the member."""
    return family.accept_invite(s, family.invite(s, volunteer, relation, now).code, member, now)


def earn(s, volunteer: Volunteer, minutes: int, n: int, *, started: datetime | None = None,
         policy: Policy | None = None) -> HourRecord:
    """Approved service hours (the approval deposits them)."""
    start = started or NOW - timedelta(days=300) + timedelta(hours=4 * n)
    r = HourRecord(volunteer_id=volunteer.id, source="activity", source_ref=f"t:{n}:{volunteer.id}",
                   minutes=minutes, started_at=start, ended_at=start + timedelta(minutes=minutes))
    s.add(r)
    s.flush()
    volunteering.decide_hours(s, [r.id], approve=True, now=NOW, coordinator=None, actor="test", rule=RULE,
                              bank=policy)
    return r


def bal(s, code: str) -> int:
    return s.scalar(select(TimeAccount.balance).where(TimeAccount.code == code)) or 0


def grant(s, minutes: int, reason: str = "独居老人助浴", recipient: str = "o_dres", policy=None,
          born: date | None = None) -> PoolGrant:
    """Requested by the street detachment's coordinator, approved by the brigade's."""
    g = pool.request_grant(s, coord(s, "o_dc_gw"), fol(s, recipient), minutes, reason, now=NOW,
                               policy=policy, birth_date=born)
    return pool.decide_grant(s, g, coord(s, "o_dc_top"), approve=True, now=NOW, rules=BANK)


# ---- the state machine --------------------------------------------------------------------

WHO = st.sampled_from([LI, WANG, QIAN])
MINUTES = st.integers(1, 200)


class Ledger(RuleBasedStateMachine):
    """李师傅 linked 居民 o_dres as family; 王师傅 and 钱医生 did not. The model holds every
    personal balance and the pool; `minted` is what approved hours created."""

    svc = None  # set by the test

    def __init__(self):
        super().__init__()
        world(self.svc)
        with self.svc.db.transaction() as s:
            self.codes = {n: f"vol:{vol(s, n).id}" for n in (LI, WANG, QIAN)}
            dres = fol(s, "o_dres")
            link(s, vol(s, LI), dres)
            self.codes["dres"] = timebank.holder_account(s, dres).code
        self.model = {code: 0 for code in self.codes.values()} | {POOL: 0}
        self.minted = 0
        self.posted: list[tuple[int, dict[str, int]]] = []  # (tx id, signed minutes per account code)
        self.reversed: set[int] = set()
        self.n = 0

    def _next(self) -> int:
        self.n += 1
        return self.n

    def _deltas(self, s, tx: TimeTransaction | None) -> dict[str, int]:
        if tx is None:
            return {}
        rows = s.execute(select(TimeAccount.code, TimeEntry.minutes).join(TimeEntry, TimeEntry.account_id == TimeAccount.id)
                         .where(TimeEntry.tx_id == tx.id)).all()
        return {code: m for code, m in rows if code in self.model}

    def _fits(self, deltas: dict[str, int]) -> bool:
        for code, m in deltas.items():
            after = self.model[code] + m
            if after < 0 or (code != POOL and m > 0 and after > CAP):
                return False
        return True

    def _apply(self, tx_id: int, deltas: dict[str, int]) -> None:
        for code, m in deltas.items():
            self.model[code] += m
        self.posted.append((tx_id, deltas))

    # -- steps --

    @rule(who=WHO, minutes=st.integers(1, 180))
    def earn(self, who, minutes):
        with self.svc.db.transaction() as s:
            r = earn(s, vol(s, who), minutes, self._next())
            txs = s.scalars(select(TimeTransaction).where(TimeTransaction.hour_record_id == r.id)
                            .order_by(TimeTransaction.id)).all()
            code = self.codes[who]
            excess = max(0, self.model[code] + minutes - CAP)
            assert [t.kind for t in txs] == (["deposit", "overflow"] if excess else ["deposit"])
            for t in txs:
                self._apply(t.id, self._deltas(s, t))
            assert self.model[code] <= CAP and (not excess or self.model[code] == CAP)
            self.minted += minutes

    @rule(holder=st.sampled_from([LI, WANG, "dres"]), payer=st.sampled_from(["self", "dres", "o_dv_qian"]),
          minutes=MINUTES)
    def spend(self, holder, payer, minutes):
        code = self.codes[holder]
        self_openid = {LI: "o_dv_li", WANG: "o_dv_wang", "dres": "o_dres"}[holder]
        openid = self_openid if payer == "self" else payer
        allowed = openid == self_openid or (holder == LI and openid == "o_dres")
        try:
            with self.svc.db.transaction() as s:
                acc = s.scalar(select(TimeAccount).where(TimeAccount.code == code))
                if acc is None:
                    raise TimeBankError("no account yet")
                tx = timebank.spend_for_order(s, acc, minutes, order_ref=f"ord-{self._next()}",
                                              payer=fol(s, openid), now=NOW)
                self._apply(tx.id, self._deltas(s, tx))
            assert allowed and self.model[code] >= 0
        except TimeBankError:
            assert not allowed or self.model[code] < minutes

    @rule(minutes=MINUTES)
    def gift(self, minutes):
        deltas = {self.codes[LI]: -minutes, self.codes["dres"]: minutes}
        try:
            with self.svc.db.transaction() as s:
                li = vol(s, LI)
                tx = timebank.gift(s, li, timebank.live_links_of_volunteer(s, li.id)[0], minutes,
                                   key=str(self._next()), now=NOW, rules=BANK)
                assert self._deltas(s, tx) == deltas
                assert self._fits(deltas)
                self._apply(tx.id, deltas)
        except TimeBankError:
            assert not self._fits(deltas)

    @rule(who=WHO, minutes=MINUTES)
    def donate(self, who, minutes):
        deltas = {self.codes[who]: -minutes, POOL: minutes}
        try:
            with self.svc.db.transaction() as s:
                tx = timebank.donate(s, vol(s, who), minutes, key=str(self._next()), now=NOW, actor="test")
                assert self._fits(deltas)
                self._apply(tx.id, deltas)
        except TimeBankError:
            assert not self._fits(deltas)

    @rule(minutes=MINUTES)
    def grant(self, minutes):
        deltas = {POOL: -minutes, self.codes["dres"]: minutes}
        try:
            with self.svc.db.transaction() as s:
                g = grant(s, minutes)
                assert g.state == "approved" and self._fits(deltas)
                self._apply(g.tx_id, deltas)
        except TimeBankError:
            assert not self._fits(deltas)
            with self.svc.db.transaction() as s:  # the request rolled back with the refusal
                assert s.scalar(select(func.count(PoolGrant.id)).where(PoolGrant.tx_id.is_(None))) == 0

    @rule(pick=st.integers(0, 10_000))
    def reverse(self, pick):
        if not self.posted:
            return
        tx_id, deltas = self.posted[pick % len(self.posted)]
        opposite = {code: -m for code, m in deltas.items()}
        try:
            with self.svc.db.transaction() as s:
                rev = timebank.reverse(s, s.get(TimeTransaction, tx_id), actor="test", reason="更正", now=NOW, cap=CAP)
                assert tx_id not in self.reversed and self._fits(opposite)
                deposit = s.get(TimeTransaction, tx_id).kind == "deposit"
                for code, m in opposite.items():
                    self.model[code] += m
                self.reversed.add(tx_id)
                if deposit:
                    self.minted += sum(opposite.values())
            assert rev.reverses_id == tx_id
        except TimeBankError:
            assert tx_id in self.reversed or not self._fits(opposite)

    @rule(ops=st.lists(st.tuples(st.sampled_from(["spend", "donate", "gift"]), WHO, MINUTES), min_size=2, max_size=4))
    def at_once(self, ops):
        """Several threads post at the same moment; each succeeds whole or not at all."""
        barrier = threading.Barrier(len(ops))
        keys = [self._next() for _ in ops]
        done: list[tuple[int, dict[str, int]]] = []
        lock = threading.Lock()

        def run(i, kind, who, minutes):
            barrier.wait(timeout=10)
            try:
                with self.svc.db.transaction() as s:
                    v = vol(s, who)
                    if kind == "spend":
                        tx = timebank.spend_for_order(s, v, minutes, order_ref=f"par-{keys[i]}", payer=v.follower,
                                                      now=NOW)
                    elif kind == "donate":
                        tx = timebank.donate(s, v, minutes, key=f"par-{keys[i]}", now=NOW, actor="test")
                    else:
                        li = vol(s, LI)
                        tx = timebank.gift(s, li, timebank.live_links_of_volunteer(s, li.id)[0], minutes,
                                           key=f"par-{keys[i]}", now=NOW, rules=BANK)
                    deltas = self._deltas(s, tx)
                with lock:
                    done.append((tx.id, deltas))
            except TimeBankError:
                pass

        threads = [threading.Thread(target=run, args=(i, *op)) for i, op in enumerate(ops)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for tx_id, deltas in done:
            self._apply(tx_id, deltas)

    # -- after every step --

    @invariant()
    def ledger_is_true(self):
        with self.svc.db.transaction() as s:
            for code, expected in self.model.items():
                assert bal(s, code) == expected, code
                assert expected >= 0 and (code == POOL or expected <= CAP), code
            assert -bal(s, ISSUED) == self.minted  # nothing created or lost beside approved hours
            report = timebank.audit(s)
            assert report.ok, report.problems
            assert report.pool_in - report.pool_out == self.model[POOL]


def test_random_ledger_operations_from_several_threads_keep_every_invariant(services):
    Ledger.svc = services
    run_state_machine_as_test(Ledger, settings=settings(
        max_examples=5, stateful_step_count=12, deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]))


# ---- family links -------------------------------------------------------------------------

def test_a_family_link_is_an_invite_code_accepted_once_and_ended_by_either_side(svc):
    world(svc)
    with svc.db.transaction() as s:
        li, dres, wang = vol(s, LI), fol(s, "o_dres"), vol(s, WANG)
        earn(s, li, 120, 1)
        inv = family.invite(s, li, "父亲", NOW)
        with pytest.raises(TimeBankError, match="自己的邀请码"):
            family.accept_invite(s, inv.code, li.follower, NOW)
        assert not timebank.may_spend(s, li, dres)
        made = family.accept_invite(s, inv.code, dres, NOW)
        assert timebank.may_spend(s, li, dres) and not timebank.may_spend(s, wang, dres)
        with pytest.raises(TimeBankError, match="使用过"):
            family.accept_invite(s, inv.code, wang.follower, NOW)
        late = family.invite(s, wang, "配偶", NOW)
        with pytest.raises(TimeBankError, match="过期"):
            family.accept_invite(s, late.code, dres, NOW + timedelta(days=family.INVITE_DAYS, seconds=1))
        assert [acc.code for acc, _, _ in timebank.payable_accounts(s, dres)] == [f"vol:{li.id}"]
        with pytest.raises(TimeBankError, match="双方"):
            family.end_link(s, made, by=wang.follower, now=NOW)
        family.end_link(s, made, by=dres, now=NOW)
        assert made.ended_by == "member" and not timebank.may_spend(s, li, dres)
        assert timebank.payable_accounts(s, dres) == []
        with pytest.raises(TimeBankError, match="已经解除"):
            family.end_link(s, made, by=li.follower, now=NOW)
        # linked again later: a new live link beside the ended one (history kept)
        again = link(s, li, dres)
        assert again.id != made.id and timebank.may_spend(s, li, dres)
        pushes = s.scalars(select(Push.title).where(Push.openid == "o_dv_li", Push.kind == "timebank")).all()
        assert pushes.count("家人已接受邀请") == 2 and "时间银行家人关系已解除" in pushes


def test_a_second_invite_ends_the_first_code(svc):
    world(svc)
    with svc.db.transaction() as s:
        li = vol(s, LI)
        first = family.invite(s, li, "母亲", NOW)
        family.invite(s, li, "母亲", NOW)
        with pytest.raises(TimeBankError, match="过期"):
            family.accept_invite(s, first.code, fol(s, "o_dres"), NOW + timedelta(seconds=1))


# ---- gifts, donations, grants -------------------------------------------------------------

def test_gifts_go_to_linked_family_only_and_within_their_cap(svc):
    world(svc)
    with svc.db.transaction() as s:
        li, dres = vol(s, LI), fol(s, "o_dres")
        earn(s, li, 300, 1)
        made = link(s, li, dres)
        timebank.gift(s, li, made, 200, key="g1", now=NOW, rules=BANK)
        assert timebank.gift(s, li, made, 200, key="g1", now=NOW, rules=BANK) is None  # the same turn again
        earn(s, li, 200, 2)
        with pytest.raises(TimeBankError, match="存储上限"):
            timebank.gift(s, li, made, 101, key="g2", now=NOW, rules=BANK)
        other = vol(s, WANG)
        with pytest.raises(TimeBankError, match="已绑定"):
            timebank.gift(s, other, made, 10, key="g3", now=NOW, rules=BANK)
        family.end_link(s, made, by=li.follower, now=NOW)
        with pytest.raises(TimeBankError, match="已绑定"):
            timebank.gift(s, li, made, 10, key="g4", now=NOW, rules=BANK)
        dres_acc = timebank.holder_account(s, dres)
        assert (dres_acc.balance, bal(s, f"vol:{li.id}")) == (200, 300)
        # the member pays their own order with what they were given
        timebank.spend_for_order(s, dres_acc, 60, order_ref="D1", payer=dres, now=NOW)
        with pytest.raises(TimeBankError):
            timebank.spend_for_order(s, dres_acc, 10, order_ref="D2", payer=li.follower, now=NOW)
        assert timebank.audit(s).ok


def test_grants_need_a_reason_and_a_coordinator_one_level_up(svc):
    world(svc)
    with svc.db.transaction() as s:
        earn(s, vol(s, LI), 200, 1)
        timebank.donate(s, vol(s, LI), 150, key="d1", now=NOW, actor="test")
        gw, top, dres = coord(s, "o_dc_gw"), coord(s, "o_dc_top"), fol(s, "o_dres")
        with pytest.raises(TimeBankError, match="原因"):
            pool.request_grant(s, gw, dres, 60, " ", now=NOW)
        g = pool.request_grant(s, gw, dres, 60, "独居老人助浴", now=NOW)
        assert timebank.holder_account(s, dres).balance == 0  # nothing moves on request
        with pytest.raises(TimeBankError, match="上一级"):
            pool.decide_grant(s, g, gw, approve=True, now=NOW)  # the requester
        assert [x.id for x in pool.pending_grants(s, top)] == [g.id] and pool.pending_grants(s, gw) == []
        pool.decide_grant(s, g, top, approve=True, now=NOW, rules=BANK)
        tx = s.get(TimeTransaction, g.tx_id)
        assert (tx.kind, tx.actor, tx.approved_by) == ("grant", f"coordinator:{gw.id}", f"coordinator:{top.id}")
        with pytest.raises(TimeBankError, match="审批过"):
            pool.decide_grant(s, g, top, approve=True, now=NOW)
        # a request by the top team is approved by another coordinator of it, never its author
        top_request = pool.request_grant(s, top, dres, 30, "重点老人", now=NOW)
        with pytest.raises(TimeBankError, match="上一级"):
            pool.decide_grant(s, top_request, gw, approve=True, now=NOW)
        with pytest.raises(TimeBankError, match="上一级"):
            pool.decide_grant(s, top_request, top, approve=True, now=NOW)
        deputy = Coordinator(team_id=top.team_id, name="郑副大队", role="brigade")
        s.add(deputy)
        s.flush()
        with pytest.raises(TimeBankError, match="驳回需要"):
            pool.decide_grant(s, top_request, deputy, approve=False, now=NOW)
        pool.decide_grant(s, top_request, deputy, approve=False, now=NOW, note="已有家属照护")
        assert (top_request.state, top_request.tx_id) == ("rejected", None)
        big = pool.request_grant(s, gw, dres, 100, "康复护理", now=NOW)
        with pytest.raises(TimeBankError, match="公益池余额不足"):
            pool.decide_grant(s, big, top, approve=True, now=NOW)
        assert big.state == "pending"  # the refusal left it as it was
        report = timebank.audit(s)
        assert report.ok and (report.pool_in, report.pool_out, report.pool_balance) == (150, 60, 90)


def test_the_audit_finds_a_grant_without_an_approval_and_a_gift_to_a_stranger(svc):
    world(svc)
    with svc.db.transaction() as s:
        li = vol(s, LI)
        earn(s, li, 200, 1)
        timebank.donate(s, li, 100, key="d", now=NOW, actor="test")
        stranger = timebank.holder_account(s, fol(s, "o_dres"))
        # postings behind the rules' back (as a broken script would)
        timebank._post(s, kind="grant", key="x1", actor="script", reason="?", now=NOW,
                       moves=[(timebank.pool_account(s), -10), (stranger, 10)])
        timebank._post(s, kind="gift", key="x2", actor="script", reason="?", now=NOW,
                       moves=[(timebank.account_for(s, li), -10), (stranger, 10)])
        problems = timebank.audit(s).problems
        assert any("a grant without an approved request" in p for p in problems)
        assert any("a gift to someone not linked" in p for p in problems)


# ---- the cap without loss -----------------------------------------------------------------

def test_hours_above_the_cap_go_to_the_pool_and_the_volunteer_is_told(svc):
    world(svc)
    with svc.db.transaction() as s:
        li = vol(s, LI)
        earn(s, li, 250, 1)
        r = earn(s, li, 100, 2)
        assert bal(s, f"vol:{li.id}") == CAP and bal(s, POOL) == 50 and -bal(s, ISSUED) == 350
        kinds = s.scalars(select(TimeTransaction.kind).where(TimeTransaction.hour_record_id == r.id)
                          .order_by(TimeTransaction.id)).all()
        assert kinds == ["deposit", "overflow"]
        told = s.scalar(select(Push).where(Push.openid == "o_dv_li", Push.kind == "timebank"))
        assert told.title == "时间银行已达存储上限" and told.data["时长"] == "50分钟" and "公益池" in told.data["事项"]
        lines = timebank.passbook(s, timebank.account_for(s, li, lock=False))
        assert [(x.label, x.minutes, x.balance_after) for x in lines] == [
            ("捐赠", -50, 300), ("存入", 100, 350), ("存入", 250, 250)]


def test_overflow_rule_family_gives_the_excess_to_linked_family_first(svc):
    world(svc)
    family = Policy(overflow="family")
    with svc.db.transaction() as s:
        li, dres = vol(s, LI), fol(s, "o_dres")
        made = link(s, li, dres)
        earn(s, li, 200, 1, policy=family)
        timebank.gift(s, li, made, 150, key="g", now=NOW, rules=BANK)  # the member holds 150 of 300
        earn(s, li, 180, 2, policy=family)  # 50 + 180 = 230: nothing over
        earn(s, li, 180, 3, policy=family)  # 230 + 180 = 410: 110 over, all fits the member
        earn(s, li, 180, 4, policy=family)  # 180 over: 40 more fit the member, 140 to the pool
        assert (bal(s, f"vol:{li.id}"), timebank.holder_account(s, dres).balance, bal(s, POOL)) == (300, 300, 140)
        assert timebank.audit(s).ok
    with pytest.raises(ValueError):
        Policy(overflow="drop")


# ---- the rules as settings ----------------------------------------------------------------

def test_daily_cap_limits_what_one_service_day_earns_and_defaults_to_none(svc):
    world(svc)
    day = datetime(2026, 3, 2, 1, 0, tzinfo=timezone.utc)  # 09:00 in Weifang
    with svc.db.transaction() as s:
        li, wang = vol(s, LI), vol(s, WANG)
        capped = Policy(daily_cap_minutes=120)
        for i, v in enumerate((li, wang)):
            policy = capped if v is li else None
            earn(s, v, 90, 10 * i + 1, started=day, policy=policy)
            earn(s, v, 90, 10 * i + 2, started=day + timedelta(hours=3), policy=policy)
            earn(s, v, 90, 10 * i + 3, started=day + timedelta(days=1), policy=policy)
        assert bal(s, f"vol:{li.id}") == 120 + 90  # 90 + 30 on the first day, 90 the next
        assert bal(s, f"vol:{wang.id}") == 270  # the default: no daily cap
        reasons = s.scalars(select(TimeTransaction.reason).where(TimeTransaction.kind == "deposit")).all()
        assert any("当日存入上限2小时" in r for r in reasons)


def test_grant_age_threshold_and_its_default(svc):
    world(svc)
    sixty = Policy(grant_min_age=60)
    with svc.db.transaction() as s:
        gw, dres = coord(s, "o_dc_gw"), fol(s, "o_dres")
        with pytest.raises(TimeBankError, match="出生日期"):
            pool.request_grant(s, gw, dres, 60, "助餐", now=NOW, policy=sixty)
        with pytest.raises(TimeBankError, match="60岁以上"):
            pool.request_grant(s, gw, dres, 60, "助餐", now=NOW, policy=sixty, birth_date=date(1970, 1, 1))
        assert pool.request_grant(s, gw, dres, 60, "助餐", now=NOW, policy=sixty,
                                      birth_date=date(1950, 1, 1)).birth_year == 1950
        # a volunteer's own date of birth is used (李师傅 was born in 1975: 51)
        with pytest.raises(TimeBankError, match="60岁以上"):
            pool.request_grant(s, gw, vol(s, LI).follower, 60, "助餐", now=NOW, policy=sixty)
        assert pool.request_grant(s, gw, dres, 60, "助餐", now=NOW).state == "pending"  # default: any age


def test_idle_balances_expire_to_the_pool_only_when_set(svc):
    world(svc)
    with svc.db.transaction() as s:
        li, wang = vol(s, LI), vol(s, WANG)
        earn(s, li, 100, 1)
        earn(s, wang, 100, 2)
    later = NOW + timedelta(days=400)
    with svc.db.transaction() as s:
        assert pool.expire_idle(s, later, Policy()) == []  # the default: never
        timebank.spend_for_order(s, vol(s, WANG), 10, order_ref="D1", payer=vol(s, WANG).follower,
                                 now=later - timedelta(days=10))
        posted = pool.expire_idle(s, later, Policy(idle_expiry_days=365))
        assert [tx.kind for tx in posted] == ["expire"]
        assert (bal(s, f"vol:{vol(s, LI).id}"), bal(s, f"vol:{vol(s, WANG).id}"), bal(s, POOL)) == (0, 90, 100)
        assert pool.expire_idle(s, later, Policy(idle_expiry_days=365)) == []  # once
        assert s.scalar(select(Push.title).where(Push.openid == "o_dv_li", Push.kind == "timebank")) == "时间银行余额已到期"
        assert timebank.audit(s).ok


def test_the_scheduler_expires_idle_balances_once_an_hour_when_set(svc, monkeypatch):
    from pushes.scheduler import run_pass

    world(svc)
    with svc.db.transaction() as s:
        earn(s, vol(s, LI), 100, 1)
    svc.clock.advance(days=800)
    assert run_pass(svc, recover=False)["rules.timebank_pool:run_due"] == 0  # the default: never
    monkeypatch.setattr(svc, "timebank_policy", Policy(idle_expiry_days=365))
    assert run_pass(svc, recover=False)["rules.timebank_pool:run_due"] == 1
    with svc.db.transaction() as s:
        earn(s, vol(s, WANG), 100, 2)
    assert run_pass(svc, recover=False)["rules.timebank_pool:run_due"] == 0  # the next pass waits its hour
    with svc.db.transaction() as s:
        assert bal(s, POOL) == 100 and timebank.audit(s).ok


def test_settings_come_from_the_environment_with_defaults_that_keep_todays_bank(tmp_path):
    default = load_config(tmp_path, environ={}).timebank_policy()
    assert default == Policy()
    assert (default.grant_min_age, default.daily_cap_minutes, default.idle_expiry_days) == (0, 0, 0)
    set_ = load_config(tmp_path, environ={"TIMEBANK_OVERFLOW": "family", "TIMEBANK_GRANT_MIN_AGE": "65",
                                          "TIMEBANK_DAILY_CAP_MINUTES": "480",
                                          "TIMEBANK_IDLE_EXPIRY_DAYS": "730"}).timebank_policy()
    assert set_ == Policy(overflow="family", grant_min_age=65, daily_cap_minutes=480, idle_expiry_days=730)
    for var, value in (("TIMEBANK_OVERFLOW", "drop"), ("TIMEBANK_GRANT_MIN_AGE", "-1"),
                       ("TIMEBANK_DAILY_CAP_MINUTES", "2000"), ("TIMEBANK_IDLE_EXPIRY_DAYS", "-5")):
        with pytest.raises(ConfigError, match=var):
            load_config(tmp_path, environ={var: value})


# ---- the passbook -------------------------------------------------------------------------

def test_passbook_of_a_year_has_every_entry_with_the_balance_after(svc):
    world(svc)
    with svc.db.transaction() as s:
        li, dres = vol(s, LI), fol(s, "o_dres")
        earn(s, li, 120, 1)
        made = link(s, li, dres)
        timebank.gift(s, li, made, 30, key="g", now=NOW, rules=BANK)
        timebank.donate(s, li, 20, key="d", now=NOW, actor="test")
        timebank.donate(s, li, 10, key="next-year", now=datetime(2027, 1, 2, tzinfo=timezone.utc), actor="test")
        lines = timebank.passbook_year(s, li, 2026)
        assert [(x.label, x.minutes, x.balance_after) for x in lines] == [
            ("存入", 120, 120), ("赠与", -30, 90), ("捐赠", -20, 70)]
        assert [(x.label, x.balance_after) for x in timebank.passbook_year(s, li, 2027)] == [("捐赠", 60)]
        assert [(x.label, x.minutes) for x in timebank.passbook_year(s, dres, 2026)] == [("赠与", 30)]
        g = grant(s, 15)
        got = timebank.passbook_year(s, dres, 2026)[-1]
        assert (got.label, got.minutes, got.balance_after, got.approved_by) == (
            "资助", 15, 45, f"coordinator:{coord(s, 'o_dc_top').id}") and g.tx_id == got.tx_id
        assert timebank.passbook_year(s, fol(s, "o_dv_wang"), 2026) == []


# ---- nothing half-done --------------------------------------------------------------------

def _fail_on(monkeypatch, name: str, when=lambda *a, **k: True):
    real = getattr(timebank, name)

    def broken(*args, **kwargs):
        if when(*args, **kwargs):
            raise RuntimeError(f"injected failure in {name}")
        return real(*args, **kwargs)

    monkeypatch.setattr(timebank, name, broken)


def _snapshot(s):
    return (sorted(s.execute(select(TimeAccount.code, TimeAccount.balance)).all()),
            s.scalar(select(func.count(TimeEntry.id))), s.scalar(select(func.count(TimeTransaction.id))),
            sorted(s.execute(select(PoolGrant.id, PoolGrant.state)).all()),
            sorted(s.execute(select(HourRecord.id, HourRecord.state)).all()))


@pytest.mark.parametrize("step", ["overflow", "gift notice", "grant notice", "approval count"])
def test_a_failure_mid_transaction_leaves_no_movement_half_done(svc, monkeypatch, step):
    world(svc)
    with svc.db.transaction() as s:
        li, dres = vol(s, LI), fol(s, "o_dres")
        earn(s, li, 280, 1)
        made = link(s, li, dres)
        timebank.donate(s, li, 100, key="d", now=NOW, actor="test")
        earn(s, li, 100, 2)
        pending = pool.request_grant(s, coord(s, "o_dc_gw"), dres, 30, "助浴", now=NOW)
        record = HourRecord(volunteer_id=li.id, source="activity", source_ref="big", minutes=150,
                            started_at=NOW - timedelta(days=2), ended_at=NOW - timedelta(days=2, minutes=-150))
        s.add(record)
        s.flush()
        ids = {"link": made.id, "grant": pending.id, "record": record.id}
    with svc.db.transaction() as s:
        before = _snapshot(s)
    if step == "overflow":  # the deposit is written, then moving the excess fails
        _fail_on(monkeypatch, "_post", lambda *a, kind, **k: kind == "overflow")
    elif step == "gift notice":  # the entries are written, then telling the member fails
        _fail_on(monkeypatch, "_tell", lambda session, account, title, *a: title == "收到家人赠与的时长")
    elif step == "grant notice":
        _fail_on(monkeypatch, "_tell", lambda session, account, title, *a: title == "收到公益池资助")
    else:  # the deposit (and its overflow) are written, then the reports' running totals fail
        monkeypatch.setattr(volunteering.reports, "count_approved",
                            lambda *a: (_ for _ in ()).throw(RuntimeError("injected")))
    with pytest.raises(RuntimeError, match="injected"):
        with svc.db.transaction() as s:
            li = vol(s, LI)
            if step in ("overflow", "approval count"):
                volunteering.decide_hours(s, [ids["record"]], approve=True, now=NOW, coordinator=None, rule=RULE)
            elif step == "gift notice":
                timebank.gift(s, li, s.get(TimeBankFamily, ids["link"]), 50, key="g", now=NOW, rules=BANK)
            else:
                pool.decide_grant(s, s.get(PoolGrant, ids["grant"]), coord(s, "o_dc_top"), approve=True,
                                      now=NOW, rules=BANK)
    with svc.db.transaction() as s:
        assert _snapshot(s) == before
        assert timebank.audit(s).ok
    monkeypatch.undo()
    with svc.db.transaction() as s:  # and the same step, unbroken, goes through whole
        volunteering.decide_hours(s, [ids["record"]], approve=True, now=NOW, coordinator=None, rule=RULE)
        assert bal(s, f"vol:{vol(s, LI).id}") == CAP and bal(s, POOL) == 100 + 130
        assert timebank.audit(s).ok


# ---- the commands -------------------------------------------------------------------------

def test_cli_grants_links_passbook_expiry_and_the_audit_of_the_pool(svc, tmp_path):
    from click.testing import CliRunner

    from bot.cli import main as volbot
    from tests.test_teams import cli_env

    world(svc)
    year = NOW.astimezone(timebank.CHINA).year
    with svc.db.transaction() as s:
        li = vol(s, LI)
        earn(s, li, 200, 1, started=NOW - timedelta(days=5))
        made = link(s, li, fol(s, "o_dres"))
        timebank.donate(s, li, 100, key="d", now=NOW, actor="test")
        gw, top, link_id = coord(s, "o_dc_gw").id, coord(s, "o_dc_top").id, made.id
    runner, env = CliRunner(), cli_env(svc, tmp_path)

    def run(*args):
        return runner.invoke(volbot, ["timebank", *args], env=env)

    out = run("grant", "request", "--coordinator", str(gw), "--volunteer", WANG, "--minutes", "30", "--reason", "术后康复")
    assert out.exit_code == 0 and "pending approval one level up" in out.output, out.output
    out = run("grant", "approve", "1", "--coordinator", str(gw))
    assert out.exit_code != 0 and "上一级" in out.output
    out = run("grant", "approve", "1", "--coordinator", str(top), "--note", "已核实")
    assert out.exit_code == 0 and "approved (transaction" in out.output, out.output
    out = run("grant", "list", "--state", "approved")
    assert "30 min" in out.output and "术后康复" in out.output
    out = run("audit")
    assert out.exit_code == 0 and "pool in 100 - out 30 = 70 min: OK" in out.output, out.output
    out = run("passbook", LI, "--year", str(year))
    assert f"{year}: 2 entries" in out.output and "存入\t+200\t= 200" in out.output and "捐赠\t-100\t= 100" in out.output
    out = run("family", LI)
    assert "父亲" in out.output and "live" in out.output and "o_dres" not in out.output
    assert run("family-end", str(link_id)).exit_code == 0
    assert "ended" in run("family", LI).output
    assert run("family-end", str(link_id)).exit_code != 0  # once
    assert "0 idle balance(s)" in run("expire").output  # the default: never
