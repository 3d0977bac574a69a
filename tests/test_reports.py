"""Reports read running totals of approved hours: approvals keep them, rebuild and audit
prove them, and every report table says exactly what a direct query of the records says."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone
from statistics import median
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, func, select, update

from bot.cli import main
from rules import access, reports, volunteering
from store.models import HourMonthTotal, HourRecord, HourYearTotal, Order, OrderEvent, Team, Volunteer
from tests import seeds
from tests.conftest import reset_data
from tests.seeds.console import coordinator
from tests.seeds.orders import place_order, resident
from tests.seeds.volunteers import add_volunteer, id_number

CHINA = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 11, 28, 8, 0, tzinfo=timezone.utc)


def totals(s) -> tuple[dict, dict]:
    months = {(r.team_id, r.year, r.month): (r.minutes, r.records) for r in s.scalars(select(HourMonthTotal))}
    years = {(r.volunteer_id, r.year): (r.minutes, r.records) for r in s.scalars(select(HourYearTotal))}
    return months, years


def record(s, vol: Volunteer, start: datetime, minutes: int, ref: str) -> HourRecord:
    return volunteering.record_hours(s, vol, source="activity", source_ref=ref, started_at=start,
                                     ended_at=start + timedelta(minutes=minutes), now=NOW)


def decide(s, rid: int, approve: bool) -> str:
    return volunteering.decide_hours(s, [rid], approve=approve, now=NOW, coordinator=None, actor="test",
                                     reason="" if approve else "不符合")[0].outcome


# ---- kept in the approving transaction ---------------------------------------------------

def test_approval_counts_in_the_local_month_and_rejection_does_not(svc):
    seeds.apply(svc, ["vol_teams"])
    with svc.db.transaction() as s:
        vol = add_volunteer(s, "o_rep_1", "报表甲", "KW2026000701", "VT-DF", id_number(order="701"))
        # 2025-12-31 16:30 UTC is 2026-01-01 00:30 in Beijing: January 2026, not December 2025.
        new_year = record(s, vol, datetime(2025, 12, 31, 16, 30, tzinfo=timezone.utc), 90, "r:1")
        june = record(s, vol, datetime(2026, 6, 10, 1, 0, tzinfo=timezone.utc), 60, "r:2")
        refused = record(s, vol, datetime(2026, 6, 11, 1, 0, tzinfo=timezone.utc), 45, "r:3")
        team_id, vid = vol.team_id, vol.id
        assert totals(s) == ({}, {})  # pending hours count nowhere
    with svc.db.transaction() as s:
        assert decide(s, new_year.id, True) == "approved"
        assert decide(s, june.id, True) == "approved"
        assert decide(s, refused.id, False) == "rejected"
        assert decide(s, june.id, True) == "already"  # decided once: counted once
    with svc.db.session() as s:
        assert totals(s) == ({(team_id, 2026, 1): (90, 1), (team_id, 2026, 6): (60, 1)},
                             {(vid, 2026): (150, 2)})
        assert reports.audit(s).ok


def test_a_rolled_back_approval_leaves_the_totals_alone(svc):
    seeds.apply(svc, ["vol_teams"])
    with svc.db.transaction() as s:
        vol = add_volunteer(s, "o_rep_2", "报表乙", "KW2026000702", "VT-DF", id_number(order="702"))
        rid = record(s, vol, NOW - timedelta(days=3), 120, "r:rb").id
    with pytest.raises(RuntimeError):
        with svc.db.transaction() as s:
            decide(s, rid, True)
            raise RuntimeError("the request failed after approving")
    with svc.db.session() as s:
        assert totals(s) == ({}, {}) and s.get(HourRecord, rid).state == "pending"


STEPS = st.lists(st.one_of(
    # record: volunteer, minutes, start as minutes before NOW (two years, month ends included)
    st.tuples(st.just("record"), st.integers(0, 2), st.integers(1, 600), st.integers(0, 2 * 365 * 24 * 60)),
    st.tuples(st.just("approve"), st.integers(0, 40)),
    st.tuples(st.just("reject"), st.integers(0, 40)),
), min_size=1, max_size=30)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=STEPS)
def test_random_decisions_keep_totals_equal_to_the_records(services, steps):
    reset_data(services)
    seeds.apply(services, ["vol_teams"])
    with services.db.transaction() as s:
        vols = [add_volunteer(s, f"o_rep_h{i}", f"随机{i}", f"KW2026000{750 + i}", code, id_number(order=f"{750 + i}"))
                for i, code in enumerate(("VT-DF", "VT-DF", "VT-BS"))]
        people = [(v.id, v.team_id) for v in vols]
    recorded: list[tuple[int, int, int, datetime]] = []  # record id, volunteer index, minutes, start
    state: dict[int, str] = {}
    for n, step in enumerate(steps):
        with services.db.transaction() as s:
            if step[0] == "record":
                start = (NOW - timedelta(minutes=step[3])).replace(second=0, microsecond=0)
                vol = s.get(Volunteer, people[step[1]][0])
                r = record(s, vol, start, min(step[2], int((NOW - start).total_seconds() // 60) or 1), f"h:{n}")
                recorded.append((r.id, step[1], r.minutes, start))
                state[r.id] = "pending"
            elif recorded:
                rid = recorded[step[1] % len(recorded)][0]
                outcome = decide(s, rid, step[0] == "approve")
                if state[rid] == "pending":
                    state[rid] = "approved" if step[0] == "approve" else "rejected"
                    assert outcome == state[rid]
                else:
                    assert outcome == "already"
    months: dict = {}
    years: dict = {}
    for rid, who, minutes, start in recorded:
        if state[rid] != "approved":
            continue
        local = start.astimezone(CHINA)
        vid, team_id = people[who]
        for key, table in (((team_id, local.year, local.month), months), ((vid, local.year), years)):
            m, c = table.get(key, (0, 0))
            table[key] = (m + minutes, c + 1)
    with services.db.session() as s:
        assert totals(s) == (months, years)
        assert reports.audit(s).ok


# ---- rebuild and audit -------------------------------------------------------------------

def env(svc) -> dict:
    return {"DATABASE_URL": svc.config.database_url or svc.config.sqlalchemy_url, "REDIS_URL": svc.redis_url,
            "VOLBOT_INSTANCE": str(svc.config.instance_path), "VOLBOT_ENV": "testing"}


def test_audit_finds_a_wrong_total_and_rebuild_mends_it(svc):
    seeds.apply(svc, ["console_world"])  # its approved hours were written directly and counted
    run = CliRunner().invoke
    out = run(main, ["reports", "audit"], env=env(svc))
    assert out.exit_code == 0 and "OK" in out.output, out.output
    with svc.db.transaction() as s:
        before = totals(s)
        assert before[0] and before[1]
        s.execute(update(HourMonthTotal).values(minutes=HourMonthTotal.minutes + 1))
        s.execute(delete(HourYearTotal))
        # and a record approved behind the rules' back (a bulk load): not counted yet
        r = s.scalars(select(HourRecord).where(HourRecord.state == "pending")).first()
        r.state = "approved"
    out = run(main, ["reports", "audit"], env=env(svc))
    assert out.exit_code == 1 and "problem(s)" in out.output and "stored (minutes, records)" in out.output
    out = run(main, ["reports", "rebuild"], env=env(svc))
    assert out.exit_code == 0 and "rebuilt:" in out.output, out.output
    out = run(main, ["reports", "audit"], env=env(svc))
    assert out.exit_code == 0 and "OK" in out.output, out.output
    with svc.db.session() as s:
        after = totals(s)
        assert sum(m for m, _ in after[0].values()) == sum(m for m, _ in before[0].values()) + r.minutes


# ---- the tables say what a direct query of the records says -----------------------------
# The queries below are the reports as they were computed before the running totals: each
# table must come out the same, row for row (ties put in one order on both sides).

def direct_hours(s, scope, year: int) -> list[list]:
    start, end = reports.year_bounds(year)
    month = reports.local_part(s, HourRecord.started_at, "month")
    stmt = access.hour_records(scope, select(Volunteer.team_id, month, func.sum(HourRecord.minutes))) \
        .where(HourRecord.state == "approved", HourRecord.started_at >= start, HourRecord.started_at < end) \
        .group_by(Volunteer.team_id, month)
    names, owner = reports._groups(s, scope)
    grid: dict[int, list[int]] = {}
    for team_id, m, minutes in s.execute(stmt):
        grid.setdefault(owner.get(team_id, scope.team_id), [0] * 12)[int(m) - 1] += int(minutes)
    return [[names[t]] + [round(x / 60, 1) for x in ms] + [round(sum(ms) / 60, 1)]
            for t, ms in sorted(grid.items(), key=lambda kv: (-sum(kv[1]), names[kv[0]]))]


def direct_ranking(s, scope, year: int) -> list[list]:
    start, end = reports.year_bounds(year)
    total = func.sum(HourRecord.minutes)
    stmt = access.hour_records(scope, select(Volunteer.number, Volunteer.name, Volunteer.team_id, total)) \
        .where(HourRecord.state == "approved", HourRecord.started_at >= start, HourRecord.started_at < end) \
        .group_by(Volunteer.id, Volunteer.number, Volunteer.name, Volunteer.team_id) \
        .order_by(total.desc(), Volunteer.number).limit(100)
    names = dict(s.execute(select(Team.id, Team.name)).all())
    return [[i, number, name, names[tid], round(int(t) / 60, 1)] for i, (number, name, tid, t) in enumerate(s.execute(stmt), 1)]


def direct_response(s, scope, year: int) -> list[list]:
    start, end = reports.year_bounds(year)
    orders = s.execute(access.orders(scope, select(Order.id, Order.created_at))
                       .where(Order.created_at >= start, Order.created_at < end)).all()
    by_month: dict[int, dict[str, list]] = {}
    for oid, at in orders:
        events = s.execute(select(OrderEvent.to_status, func.min(OrderEvent.at)).where(OrderEvent.order_id == oid)
                           .group_by(OrderEvent.to_status)).all()
        firsts = dict(events)
        b = by_month.setdefault(at.astimezone(CHINA).month, {"n": 0, "acc": [], "done": []})
        b["n"] += 1
        for status, key in (("accepted", "acc"), ("completed", "done")):
            if status in firsts:
                b[key].append((firsts[status] - at).total_seconds() / 3600)

    def stats(values):
        return [round(median(values), 1), round(sum(values) / len(values), 1)] if values else ["", ""]
    return [[f"{m}月", b["n"], len(b["acc"]), *stats(b["acc"]), len(b["done"]), *stats(b["done"])]
            for m, b in sorted(by_month.items())]


@pytest.fixture
def busy_world(svc):
    """console_world plus two years of randomised approved and rejected hours across both
    subtrees, and orders whose acceptance and completion come at random later times."""
    seeds.apply(svc, ["console_world"])
    rnd = random.Random(9)
    with svc.db.transaction() as s:
        vols = [add_volunteer(s, None, f"报表{i}", f"KW2026{600 + i:06d}", rnd.choice(["VT-DF", "VT-XH", "VT-BS"]),
                              id_number(order=f"{600 + i}")) for i in range(12)]
        ids = []
        for n in range(160):
            start = (NOW - timedelta(minutes=rnd.randrange(2 * 365 * 24 * 60))).replace(second=0, microsecond=0)
            ids.append((record(s, rnd.choice(vols), start, rnd.choice((30, 60, 90, 120, 60)), f"bw:{n}").id,
                        rnd.random()))
    with svc.db.transaction() as s:
        for rid, roll in ids:
            if roll < 0.8:
                decide(s, rid, True)
            elif roll < 0.9:
                decide(s, rid, False)
    with svc.db.transaction() as s:
        communities = [s.get(Team, t).community_id for t in
                       s.scalars(select(Team.id).where(Team.code.in_(["VT-DF", "VT-BS", "VT-XH"])))]
        res = resident(s, "o_rep_res", phone="13700002222")
        for _ in range(60):
            created = NOW - timedelta(minutes=rnd.randrange(2 * 365 * 24 * 60), microseconds=rnd.randrange(10**6))
            order = place_order(s, res, sub_code=rnd.choice(["08-01", "05-03"]), now=created)
            order.community_id = rnd.choice(communities)
            if rnd.random() < 0.8:
                for _ in range(rnd.choice((1, 2))):  # a re-acceptance too: the first one counts
                    s.add(OrderEvent(order_id=order.id, at=created + timedelta(seconds=rnd.randrange(1, 40 * 3600)),
                                     from_status="submitted", to_status="accepted", actor_kind="volunteer"))
            if rnd.random() < 0.5:
                s.add(OrderEvent(order_id=order.id, at=created + timedelta(seconds=rnd.randrange(40 * 3600, 90 * 3600)),
                                 from_status="in_service", to_status="completed", actor_kind="volunteer"))
    return svc


@pytest.mark.parametrize("username", ["admin", "dg_lead", "df_lead", "bs_lead"])
def test_report_tables_equal_direct_queries_of_the_records(busy_world, username):
    with busy_world.db.session() as s:
        assert reports.audit(s).ok
        scope = access.scope_for(s, coordinator(s, username))
        seen = 0
        for year in (NOW.year - 2, NOW.year - 1, NOW.year):
            hours = reports.hours_by_team_month(s, scope, year)
            assert hours.rows == direct_hours(s, scope, year)
            assert reports.volunteer_ranking(s, scope, year).rows == direct_ranking(s, scope, year)
            assert reports.response_times(s, scope, year).rows == direct_response(s, scope, year)
            seen += len(hours.rows)
        assert seen > 0


def test_a_squad_lead_sees_only_their_squads_totals(busy_world):
    with busy_world.db.session() as s:
        scope = access.scope_for(s, coordinator(s, "bs_lead"))
        own = {n for (n,) in s.execute(select(Volunteer.number).where(Volunteer.team_id.in_(scope.team_ids)))}
        for year in (NOW.year - 1, NOW.year):
            ranking = reports.volunteer_ranking(s, scope, year).rows
            assert {r[1] for r in ranking} <= own
            assert all(r[0] == s.scalar(select(Team.name).where(Team.id == scope.team_id))
                       for r in reports.hours_by_team_month(s, scope, year).rows)


def test_the_demo_districts_history_is_counted_as_it_is_approved(svc):
    from demo import district

    with svc.db.transaction() as s:
        district.seed(s, now=NOW, pii_key=svc.config.pii_key)
    with svc.db.session() as s:
        result = reports.audit(s)
        assert result.ok, result.problems
        approved = s.scalar(select(func.sum(HourRecord.minutes)).where(HourRecord.state == "approved"))
        assert approved and s.scalar(select(func.sum(HourYearTotal.minutes))) == approved
