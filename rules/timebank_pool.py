"""The district pool of the time bank (公益池): grants to residents in need, requested with
a reason by a coordinator and approved by one a team level up before any minute moves
(the decision and the transfer are one savepoint), and the optional expiry of idle
balances into the pool (the scheduler's due work). Donations and overflows into the pool,
and the ledger itself, are `rules.timebank`'s.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from rules import pii
from rules import timebank as bank
from rules.timebank import CHINA, BankRules, Policy, TimeBankError
from store.models import Coordinator, Follower, PoolGrant, Team, TimeAccount, TimeEntry, TimeTransaction, Volunteer


def age_on(born: date, day: date) -> int:
    return day.year - born.year - ((day.month, day.day) < (born.month, born.day))


def request_grant(session: Session, coordinator: Coordinator, follower: Follower, minutes: int, reason: str, *,
                  now: datetime, policy: Policy | None = None, birth_date: date | None = None) -> PoolGrant:
    """A coordinator asks for pool minutes for a resident in need; nothing moves until a
    coordinator one level up approves."""
    policy = policy or Policy()
    if coordinator is None or not coordinator.active:
        raise TimeBankError("只有在任的协调员可以申请公益池资助。")
    if not 1 <= minutes <= 100 * 60:
        raise TimeBankError("资助时长请填写 1-6000 分钟。")
    if not reason.strip():
        raise TimeBankError("资助需要说明原因。")
    vol = session.scalar(select(Volunteer).where(Volunteer.follower_id == follower.id))
    # A volunteer's birth date is in their sealed ID number (the database keeps the year).
    born = pii.birth_date_of(vol.id_number_enc) if vol is not None else birth_date
    if policy.grant_min_age:
        if born is None:
            raise TimeBankError(f"公益池资助只给{policy.grant_min_age}岁以上的居民，请填写出生日期。")
        if age_on(born, now.astimezone(CHINA).date()) < policy.grant_min_age:
            raise TimeBankError(f"公益池资助只给{policy.grant_min_age}岁以上的居民。")
    grant = PoolGrant(follower_id=follower.id, minutes=minutes, reason=reason.strip()[:255],
                      birth_year=born.year if born else None,
                      team_id=coordinator.team_id, requested_by=coordinator.id, requested_at=now, state="pending")
    session.add(grant)
    session.flush()
    return grant


def may_approve(session: Session, coordinator: Coordinator | None, grant: PoolGrant) -> bool:
    """One level up: a coordinator of a team above the requester's (for the district's top
    team, which has none, another coordinator of that team). Never the requester."""
    if coordinator is None or not coordinator.active or coordinator.id == grant.requested_by:
        return False
    team = session.get(Team, grant.team_id)
    mine = session.get(Team, coordinator.team_id)
    if team.parent_id is None:
        return mine.id == team.id
    return team.path.startswith(mine.path) and mine.id != team.id


def decide_grant(session: Session, grant: PoolGrant, coordinator: Coordinator, *, approve: bool, now: datetime,
                 note: str = "", rules: BankRules | None = None) -> PoolGrant:
    """Approve (the pool pays, once) or reject a pending grant."""
    if not may_approve(session, coordinator, grant):
        raise TimeBankError("资助需要由申请人的上一级协调员审批。")
    if not approve and not note.strip():
        raise TimeBankError("驳回需要说明原因。")
    # One savepoint: a grant the pool cannot pay stays pending, whatever the caller does next.
    with session.begin_nested():
        won = session.execute(update(PoolGrant).where(PoolGrant.id == grant.id, PoolGrant.state == "pending")
                              .values(state="approved" if approve else "rejected", decided_by=coordinator.id,
                                      decided_at=now, note=note.strip()[:255] or None)
                              .execution_options(synchronize_session=False)).rowcount == 1
        if not won:
            raise TimeBankError("这笔资助已经审批过了。")
        if approve:
            follower = session.get(Follower, grant.follower_id)
            target = bank.holder_account(session, follower)
            cap = rules.cap_minutes if rules is not None else None
            tx = bank._post(session, kind="grant", key=f"grant:{grant.id}", actor=f"coordinator:{grant.requested_by}",
                       reason=f"公益池资助：{grant.reason}", now=now, approved_by=f"coordinator:{coordinator.id}",
                       moves=[(bank.pool_account(session), -grant.minutes), (target, grant.minutes)], cap=cap)
            session.execute(update(PoolGrant).where(PoolGrant.id == grant.id).values(tx_id=tx.id)
                            .execution_options(synchronize_session=False))
            bank._tell(session, target, "收到公益池资助", grant.reason, grant.minutes, now, f"grant:{grant.id}")
    session.refresh(grant)
    return grant


def pending_grants(session: Session, coordinator: Coordinator) -> list[PoolGrant]:
    """Grants waiting that this coordinator may decide."""
    rows = session.scalars(select(PoolGrant).where(PoolGrant.state == "pending").order_by(PoolGrant.id))
    return [g for g in rows if may_approve(session, coordinator, g)]


# ---- idle expiry --------------------------------------------------------------------------

def expire_idle(session: Session, now: datetime, policy: Policy) -> list[TimeTransaction]:
    """Balances untouched for `idle_expiry_days` go to the pool (once per idle spell: the
    key names the last entry); the holders are told. Nothing with the default policy."""
    if not policy.idle_expiry_days:
        return []
    cutoff = now - timedelta(days=policy.idle_expiry_days)
    last = (select(TimeEntry.account_id, func.max(TimeEntry.id).label("last_id"),
                   func.max(TimeEntry.created_at).label("last_at")).group_by(TimeEntry.account_id).subquery())
    idle = session.execute(
        select(TimeAccount, last.c.last_id).join(last, last.c.account_id == TimeAccount.id)
        .where(TimeAccount.balance > 0, ~TimeAccount.code.startswith("system:"), last.c.last_at < cutoff)
        .order_by(TimeAccount.id)).all()
    posted = []
    pool = bank.pool_account(session)
    for acc, last_id in idle:
        with session.begin_nested():
            bank._lock(session, acc, pool)
            if acc.balance <= 0:
                continue
            minutes = acc.balance
            tx = bank._post(session, kind="expire", key=f"expire:{acc.id}:{last_id}", actor="system",
                       reason=f"余额{policy.idle_expiry_days}天未使用，转入公益池", now=now,
                       moves=[(acc, -minutes), (pool, minutes)])
        if tx is not None:
            posted.append(tx)
            bank._tell(session, acc, "时间银行余额已到期", "长期未使用，已转入公益池", minutes, now, f"expire:{tx.id}")
    return posted


EXPIRY_KEY = "volbot:timebank:expiry-pass"  # at most one expiry pass an hour (losing it costs one pass)


def run_due(services) -> int:
    """The scheduler's due work (pushes.scheduler.DUE_WORK): with idle expiry set, move idle
    balances to the pool, at most once an hour. Returns how many moved."""
    policy = getattr(services, "timebank_policy", None) or Policy()
    if not policy.idle_expiry_days or not services.redis.set(EXPIRY_KEY, "1", nx=True, ex=3600):
        return 0
    with services.db.transaction() as session:
        return len(expire_idle(session, services.clock.now(), policy))
