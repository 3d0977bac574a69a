"""The time-bank ledger: accounts, deposits from approved hours, the storage cap, spending
on orders, gifts and donations, reversals, the passbook and the audit. Family links are
made in `rules.timebank_family`, pool grants and idle expiry are `rules.timebank_pool`'s;
both post through this module.

Rules:
- minutes are created only by `deposit_for_hours`, from an *approved* hour record, once
  per record (idempotency key `deposit:hour:<id>`), at the configured rate, within the
  district's optional daily earning cap. What goes above the storage cap is never lost:
  it moves on at once, in its own `overflow` transaction, to the district pool (or, by
  `Policy.overflow = "family"`, to the volunteer's linked family first), and the volunteer
  is told;
- spending needs the account's holder, or a family member the volunteer linked (an invite
  code accepted in chat), and never takes a balance below zero; an order is paid once;
- a volunteer may give minutes to a linked family member (`gift`) and donate to the
  district pool (`donate`); the pool pays out only through a `PoolGrant` requested with a
  reason by a coordinator and approved by one a team level up (`grant`);
- entries never change; `reverse` posts the opposite entries as a new transaction;
- every posting locks the accounts it touches (`SELECT … FOR UPDATE` on PostgreSQL; SQLite
  serialises writers), the issuing account first and the rest by id, so the cached
  balances and the checks stay true under concurrency and two postings never deadlock.

The district's choices (`Policy`) come from `bot/config.py` as plain values; this module
reads no configuration.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import bindparam, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from rules import masks
from store.models import (
    Follower,
    HourRecord,
    PoolGrant,
    TimeAccount,
    TimeBankFamily,
    TimeEntry,
    TimeTransaction,
    Volunteer,
)
from store.models.timebank import ISSUED, POOL, REDEEMED
from store.outbox import notify

CHINA = ZoneInfo("Asia/Shanghai")
OVERFLOW_RULES = ("pool", "family")
# What a passbook line says for each kind of transaction (the sign says which way).
LABELS = {"deposit": "存入", "spend": "支出", "gift": "赠与", "donate": "捐赠", "overflow": "捐赠",
          "grant": "资助", "expire": "到期转捐", "reversal": "冲正"}
POOL_IN_KINDS = ("donate", "overflow", "expire")


class TimeBankError(ValueError):
    """A refused operation; the message is a short Chinese sentence for the user."""


@dataclass(frozen=True)
class BankRules:
    """The district's data file (menus/volunteers.yaml): the earning rate and storage cap."""

    rate_numerator: int = 1
    rate_denominator: int = 1
    cap_minutes: int | None = 90000

    def credit_for(self, service_minutes: int) -> int:
        return service_minutes * self.rate_numerator // self.rate_denominator


@dataclass(frozen=True)
class Policy:
    """The district's settings (bot/config.py, TIMEBANK_*). Each default keeps the bank as
    it was before they existed: no age rule, no daily cap, no expiry; above the cap to the pool."""

    overflow: str = "pool"  # pool | family (linked family first, the rest to the pool)
    grant_min_age: int = 0  # pool grants only to residents at least this old (0: any age)
    daily_cap_minutes: int = 0  # minutes one volunteer may earn per service day (0: no cap)
    idle_expiry_days: int = 0  # a balance untouched this long goes to the pool (0: never)

    def __post_init__(self):
        if self.overflow not in OVERFLOW_RULES:
            raise ValueError(f"overflow must be one of {OVERFLOW_RULES}")


# ---- accounts -----------------------------------------------------------------------------

def _account(session: Session, code: str, volunteer_id: int | None = None, follower_id: int | None = None,
             allow_negative: bool = False, lock: bool = True) -> TimeAccount:
    """The account with `code`, created on first use; locked for this transaction."""
    stmt = select(TimeAccount).where(TimeAccount.code == code)
    if lock:
        # populate_existing: the balance read after the lock is the committed one.
        stmt = stmt.with_for_update().execution_options(populate_existing=True)
    acc = session.scalar(stmt)
    if acc is None:
        try:
            with session.begin_nested():
                acc = TimeAccount(code=code, volunteer_id=volunteer_id, follower_id=follower_id,
                                  allow_negative=allow_negative)
                session.add(acc)
                session.flush()
        except IntegrityError:  # created meanwhile by a concurrent transaction
            acc = session.scalar(stmt)
    return acc


def _lock(session: Session, *accounts: TimeAccount) -> None:
    """Lock accounts in one global order, the issuing account first and the rest by id, and
    re-read their balances (populate_existing: the committed values, not a stale cache)."""
    ids = {a.id for a in accounts}
    issued = [a.id for a in accounts if a.code == ISSUED]
    for part in (issued, sorted(ids - set(issued))):
        if part:
            session.scalars(select(TimeAccount).where(TimeAccount.id.in_(part)).order_by(TimeAccount.id)
                            .with_for_update().execution_options(populate_existing=True)).all()


def lock_issuing(session: Session) -> TimeAccount:
    """Lock the issuing account: every deposit takes it first, so approvals that deposit
    (and check stars) run one after another instead of racing."""
    return _account(session, ISSUED, allow_negative=True)


def pool_account(session: Session, lock: bool = False) -> TimeAccount:
    return _account(session, POOL, lock=lock)


def account_for(session: Session, volunteer: Volunteer, lock: bool = True) -> TimeAccount:
    return _account(session, f"vol:{volunteer.id}", volunteer_id=volunteer.id, lock=lock)


def holder_account(session: Session, follower: Follower, lock: bool = False) -> TimeAccount:
    """Where minutes given to a person land: their volunteer account if they are one,
    else their own resident account (created on first use)."""
    vol = session.scalar(select(Volunteer).where(Volunteer.follower_id == follower.id))
    if vol is not None:
        return account_for(session, vol, lock=lock)
    return _account(session, f"fol:{follower.id}", follower_id=follower.id, lock=lock)


def _as_account(session: Session, holder: Volunteer | TimeAccount) -> TimeAccount:
    return holder if isinstance(holder, TimeAccount) else account_for(session, holder, lock=False)


_BALANCE = select(TimeAccount.balance).where(TimeAccount.volunteer_id == bindparam("volunteer_id"))


def balance(session: Session, volunteer: Volunteer) -> int:
    """Minutes held (0 without an account); read from the cache the audit proves."""
    value = session.scalar(_BALANCE, {"volunteer_id": volunteer.id})
    return value or 0


def follower_of(session: Session, account: TimeAccount) -> Follower | None:
    """Who is told about movements of `account` (its holder in chat), if anyone."""
    if account.follower_id is not None:
        return session.get(Follower, account.follower_id)
    if account.volunteer_id is not None:
        vol = session.get(Volunteer, account.volunteer_id)
        return vol.follower if vol is not None else None
    return None


def holder_name(session: Session, account: TimeAccount) -> str:
    """A masked name for a passbook line: 张**, 居民, 公益池."""
    if account.code == POOL:
        return "公益池"
    if account.volunteer_id is not None:
        vol = session.get(Volunteer, account.volunteer_id)
        return masks.name(vol.name) if vol is not None else "志愿者"
    return "家人" if account.follower_id is not None else account.code


# ---- posting ------------------------------------------------------------------------------

def _post(session: Session, *, kind: str, key: str, actor: str, reason: str, now: datetime,
          moves: list[tuple[TimeAccount, int]], hour_record_id: int | None = None,
          order_ref: str | None = None, reverses_id: int | None = None, approved_by: str | None = None,
          cap: int | None = None) -> TimeTransaction | None:
    """Write one balanced transaction; None if `key` was posted before. `cap`: no personal
    account may end above it (the pool and system accounts have none)."""
    if sum(m for _, m in moves) != 0:
        raise ValueError("unbalanced transaction")
    if session.scalar(select(TimeTransaction.id).where(TimeTransaction.idempotency_key == key)):
        return None
    _lock(session, *(acc for acc, _ in moves))
    for acc, minutes in moves:
        if not acc.allow_negative and acc.balance + minutes < 0:
            raise TimeBankError("公益池余额不足。" if acc.code == POOL else "时间银行余额不足。")
        if (cap is not None and minutes > 0 and not acc.code.startswith("system:")
                and acc.balance + minutes > cap):
            raise TimeBankError(f"收款的时间银行将超过存储上限（{hours_text(cap)}）。")
    tx = TimeTransaction(kind=kind, idempotency_key=key, actor=actor[:64], reason=reason[:255],
                         hour_record_id=hour_record_id, order_ref=order_ref, reverses_id=reverses_id,
                         approved_by=approved_by and approved_by[:64], created_at=now)
    try:
        with session.begin_nested():
            session.add(tx)
            session.flush()
    except IntegrityError:
        return None  # the same key, posted by a concurrent transaction
    for acc, minutes in moves:
        session.add(TimeEntry(tx_id=tx.id, account_id=acc.id, minutes=minutes, created_at=now))
        acc.balance += minutes
    session.flush()
    return tx


def _tell(session: Session, account: TimeAccount, title: str, what: str, minutes: int, now: datetime,
          key: str) -> None:
    """A time-bank notice to the account's holder (push kind `timebank`)."""
    follower = follower_of(session, account)
    if follower is None or not follower.subscribed:
        return
    notify(session, openid=follower.openid, kind="timebank", title=title,
           fields={"事项": what[:20], "时长": hours_text(abs(minutes)) if minutes else "",
                   "余额": hours_text(account.balance),
                   "时间": f"{now.astimezone(CHINA):%Y年%m月%d日 %H:%M}"},
           dedup_key=f"timebank:{key}")


def hours_text(minutes: int) -> str:
    """The same wording as rules.volunteering.hours_text (kept here: volunteering imports us)."""
    if 0 < minutes < 60:
        return f"{minutes}分钟"
    h = minutes / 60
    return f"{int(h)}小时" if minutes % 60 == 0 else f"{h:.1f}小时"


# ---- earning ------------------------------------------------------------------------------

def _earned_on(session: Session, acc: TimeAccount, volunteer_id: int, day: date) -> int:
    """Minutes this account earned from service done on local `day` (deposits less their
    reversals)."""
    start = datetime(day.year, day.month, day.day, tzinfo=CHINA)
    return int(session.scalar(
        select(func.coalesce(func.sum(TimeEntry.minutes), 0))
        .join(TimeTransaction, TimeTransaction.id == TimeEntry.tx_id)
        .join(HourRecord, HourRecord.id == TimeTransaction.hour_record_id)
        .where(TimeEntry.account_id == acc.id, TimeTransaction.kind.in_(("deposit", "reversal")),
               HourRecord.volunteer_id == volunteer_id,
               HourRecord.started_at >= start, HourRecord.started_at < start + timedelta(days=1))) or 0)


def deposit_for_hours(session: Session, record: HourRecord, *, actor: str, now: datetime,
                      rules: BankRules, policy: Policy | None = None) -> TimeTransaction | None:
    """Credit an approved hour record once. Above the daily cap (if any) nothing more is
    earned that day; above the storage cap the excess moves on (`_overflow`), never lost."""
    policy = policy or Policy()
    if record.state != "approved":
        raise TimeBankError("只有审核通过的时长可以存入时间银行。")
    issued = lock_issuing(session)
    acc = account_for(session, record.volunteer)
    credit = rules.credit_for(record.minutes)
    reason = f"服务时长存入（记录 {record.id}，{record.minutes} 分钟）"
    if policy.daily_cap_minutes:
        day = record.started_at.astimezone(CHINA).date()
        room = max(0, policy.daily_cap_minutes - _earned_on(session, acc, record.volunteer_id, day))
        if credit > room:
            reason += f"，当日存入上限{hours_text(policy.daily_cap_minutes)}，存入 {room} 分钟"
            credit = room
    if credit <= 0:
        return None
    tx = _post(session, kind="deposit", key=f"deposit:hour:{record.id}", actor=actor,
               reason=reason, now=now, moves=[(issued, -credit), (acc, credit)],
               hour_record_id=record.id)
    if tx is not None and rules.cap_minutes is not None and acc.balance > rules.cap_minutes:
        # What this deposit brought above the cap (never more: a balance left above a
        # lowered cap is not swept away by the next deposit).
        _overflow(session, acc, record, min(credit, acc.balance - rules.cap_minutes), rules, policy,
                  actor=actor, now=now)
    return tx


def _overflow(session: Session, acc: TimeAccount, record: HourRecord, excess: int, rules: BankRules,
              policy: Policy, *, actor: str, now: datetime) -> None:
    """Move what lies above the storage cap out of `acc` (in the deposit's transaction):
    to linked family members with room (rule "family"), the rest to the pool; tell them."""
    cap, total = rules.cap_minutes, excess
    if policy.overflow == "family":
        for link in live_links_of_volunteer(session, record.volunteer_id):
            member = session.get(Follower, link.follower_id)
            target = holder_account(session, member)
            _lock(session, acc, target)
            room = max(0, cap - target.balance) if cap is not None else excess
            part = min(room, excess)
            if part <= 0:
                continue
            _post(session, kind="overflow", key=f"overflow:hour:{record.id}:fam:{link.id}", actor=actor,
                  reason=f"超出存储上限，转赠家人（记录 {record.id}）", now=now,
                  moves=[(acc, -part), (target, part)], hour_record_id=record.id)
            _tell(session, target, "收到家人时长", "家人超出上限的时长转入", part, now,
                  f"overflow:{record.id}:fam:{link.id}")
            excess -= part
            if excess <= 0:
                break
    if excess > 0:
        pool = pool_account(session)
        _post(session, kind="overflow", key=f"overflow:hour:{record.id}", actor=actor,
              reason=f"超出存储上限{hours_text(cap)}，捐入公益池（记录 {record.id}）", now=now,
              moves=[(acc, -excess), (pool, excess)], hour_record_id=record.id)
    where = "公益池" if excess == total else ("家人" if excess <= 0 else "家人和公益池")
    _tell(session, acc, "时间银行已达存储上限", f"超出上限的时长已转入{where}", total, now, f"overflow:{record.id}")


# ---- family links -------------------------------------------------------------------------

def live_links_of_volunteer(session: Session, volunteer_id: int) -> list[TimeBankFamily]:
    return list(session.scalars(select(TimeBankFamily).where(
        TimeBankFamily.volunteer_id == volunteer_id, TimeBankFamily.ended_at.is_(None)).order_by(TimeBankFamily.id)))


def live_link(session: Session, volunteer_id: int, follower_id: int) -> TimeBankFamily | None:
    return session.scalar(select(TimeBankFamily).where(
        TimeBankFamily.volunteer_id == volunteer_id, TimeBankFamily.follower_id == follower_id,
        TimeBankFamily.ended_at.is_(None)))


# ---- spending -----------------------------------------------------------------------------

def may_spend(session: Session, holder: Volunteer | TimeAccount, follower: Follower | None) -> bool:
    """The holder themself, or a family member the volunteer linked (a live link)."""
    if follower is None:
        return False
    acc = holder if isinstance(holder, TimeAccount) else None
    if acc is not None and acc.follower_id is not None:
        return acc.follower_id == follower.id
    volunteer = holder if isinstance(holder, Volunteer) else (
        session.get(Volunteer, acc.volunteer_id) if acc is not None and acc.volunteer_id else None)
    if volunteer is None:
        return False
    if volunteer.follower_id == follower.id:
        return True
    return live_link(session, volunteer.id, follower.id) is not None


def payable_accounts(session: Session, follower: Follower) -> list[tuple[TimeAccount, str, int]]:
    """Accounts this follower may pay their own orders from, with minutes in them: their own
    (volunteer or resident) first, then those of volunteers who linked them. Each with
    whose it is in words (本人, 张**的) and its balance."""
    rows = session.execute(
        select(TimeAccount, Volunteer).outerjoin(Volunteer, Volunteer.id == TimeAccount.volunteer_id)
        .where(TimeAccount.balance > 0, or_(
            TimeAccount.follower_id == follower.id,
            Volunteer.follower_id == follower.id,
            TimeAccount.volunteer_id.in_(select(TimeBankFamily.volunteer_id).where(
                TimeBankFamily.follower_id == follower.id, TimeBankFamily.ended_at.is_(None)))))).all()
    out = []
    for acc, vol in rows:
        own = acc.follower_id == follower.id or (vol is not None and vol.follower_id == follower.id)
        out.append((acc, "本人" if own else f"{masks.name(vol.name)}的", acc.balance, own))
    out.sort(key=lambda r: (not r[3], r[0].id))
    return [(acc, whose, minutes) for acc, whose, minutes, _ in out]


def spend_for_order(session: Session, holder: Volunteer | TimeAccount, minutes: int, *, order_ref: str,
                    payer: Follower | None, now: datetime, actor: str | None = None) -> TimeTransaction | None:
    """Pay an order with time. Refused for anyone but the holder or linked family, for
    non-positive amounts and when the balance is short. Paying the same order again is a no-op."""
    if minutes <= 0:
        raise TimeBankError("支付的时长必须大于零。")
    acc = _as_account(session, holder)
    if not may_spend(session, acc, payer):
        raise TimeBankError("只有志愿者本人或其绑定的家人可以使用时间银行。")
    redeemed = _account(session, REDEEMED, allow_negative=True, lock=False)
    return _post(session, kind="spend", key=f"spend:{order_ref}", actor=actor or f"follower:{payer.id}",
                 reason=f"支付服务订单 {order_ref}（{minutes} 分钟）", now=now,
                 moves=[(acc, -minutes), (redeemed, minutes)], order_ref=order_ref)


# ---- gifts and donations ------------------------------------------------------------------

def gift(session: Session, volunteer: Volunteer, link: TimeBankFamily, minutes: int, *, key: str,
         now: datetime, rules: BankRules, actor: str | None = None) -> TimeTransaction | None:
    """The volunteer gives minutes to a linked family member (within the member's cap)."""
    if minutes <= 0:
        raise TimeBankError("赠与的时长必须大于零。")
    if link.volunteer_id != volunteer.id or link.ended_at is not None:
        raise TimeBankError("只能赠与已绑定的家人。")
    member = session.get(Follower, link.follower_id)
    source = account_for(session, volunteer, lock=False)
    target = holder_account(session, member)
    if target.id == source.id:
        raise TimeBankError("不能赠与自己。")
    tx = _post(session, kind="gift", key=f"gift:{key}", actor=actor or f"follower:{volunteer.follower_id}",
               reason=f"赠与家人（{link.relation or '家人'}）{minutes} 分钟", now=now,
               moves=[(source, -minutes), (target, minutes)], cap=rules.cap_minutes)
    if tx is not None:
        _tell(session, target, "收到家人赠与的时长", f"{masks.name(volunteer.name)}赠与", minutes, now, f"gift:{tx.id}")
    return tx


def donate(session: Session, holder: Volunteer | TimeAccount, minutes: int, *, key: str, now: datetime,
           actor: str) -> TimeTransaction | None:
    """Minutes from a holder's account to the district pool."""
    if minutes <= 0:
        raise TimeBankError("捐赠的时长必须大于零。")
    acc = _as_account(session, holder)
    return _post(session, kind="donate", key=f"donate:{key}", actor=actor,
                 reason=f"捐赠给公益池 {minutes} 分钟", now=now,
                 moves=[(acc, -minutes), (pool_account(session), minutes)])


# ---- reversals ----------------------------------------------------------------------------

def reverse(session: Session, tx: TimeTransaction, *, actor: str, reason: str, now: datetime,
            cap: int | None = None) -> TimeTransaction:
    """Post the opposite of `tx` (once). Refused if it would take a balance below zero,
    e.g. reversing a deposit whose minutes were already spent, or a personal balance
    above `cap` (the storage cap, so nothing has to overflow to undo a mistake)."""
    if tx.kind == "reversal":
        raise TimeBankError("冲正记录不能再次冲正。")
    if not reason.strip():
        raise TimeBankError("冲正需要说明原因。")
    entries = list(session.scalars(select(TimeEntry).where(TimeEntry.tx_id == tx.id).order_by(TimeEntry.id)))
    accounts = {e.account_id: session.get(TimeAccount, e.account_id) for e in entries}
    posted = _post(session, kind="reversal", key=f"reverse:{tx.id}", actor=actor,
                   reason=f"冲正交易 {tx.id}：{reason}", now=now,
                   moves=[(accounts[e.account_id], -e.minutes) for e in entries],
                   hour_record_id=tx.hour_record_id, order_ref=tx.order_ref, reverses_id=tx.id, cap=cap)
    if posted is None:
        raise TimeBankError("这笔交易已经冲正过了。")
    return posted


# ---- the passbook -------------------------------------------------------------------------

@dataclass(frozen=True)
class PassbookLine:
    """One entry of an account, as a passbook (存折) shows it."""

    entry_id: int
    tx_id: int
    at: datetime
    kind: str
    label: str  # 存入 / 支出 / 赠与 / 捐赠 / 资助 / 到期转捐 / 冲正
    minutes: int  # + in, - out
    balance_after: int
    reason: str
    actor: str
    approved_by: str | None


def _lines(session: Session, account_id: int, *, start: datetime | None = None, end: datetime | None = None,
           newest_first: bool = False, offset: int = 0, limit: int | None = None) -> list[PassbookLine]:
    """An account's entries with the balance after each: one query, the running balance summed
    by the database over the whole account (entries never change, so it is exact), only the
    period's lines read."""
    running = (select(TimeEntry.id.label("entry_id"), TimeEntry.tx_id, TimeEntry.minutes, TimeEntry.created_at,
                      func.sum(TimeEntry.minutes).over(order_by=TimeEntry.id).label("after"))
               .where(TimeEntry.account_id == account_id).subquery())
    stmt = (select(running, TimeTransaction).join(TimeTransaction, TimeTransaction.id == running.c.tx_id))
    if start is not None:
        stmt = stmt.where(running.c.created_at >= start)
    if end is not None:
        stmt = stmt.where(running.c.created_at < end)
    stmt = stmt.order_by(running.c.entry_id.desc() if newest_first else running.c.entry_id).offset(offset)
    if limit is not None:
        stmt = stmt.limit(limit)
    out = []
    for row in session.execute(stmt):
        tx = row.TimeTransaction
        out.append(PassbookLine(row.entry_id, tx.id, row.created_at, tx.kind, LABELS.get(tx.kind, tx.kind),
                                int(row.minutes), int(row.after), tx.reason, tx.actor, tx.approved_by))
    return out


def passbook(session: Session, account: TimeAccount, limit: int = 8) -> list[PassbookLine]:
    """The latest entries of an account, newest first, each with the balance after it."""
    return _lines(session, account.id, newest_first=True, limit=limit)


def passbook_year(session: Session, holder: Volunteer | Follower | TimeAccount, year: int, *,
                  newest_first: bool = False, offset: int = 0, limit: int | None = None) -> list[PassbookLine]:
    """The entries of the holder's account in local (Asia/Shanghai) calendar `year` (oldest
    first, or a page of them newest first as the web passbook shows them), each with the
    balance after it. A holder without an account has none."""
    if isinstance(holder, TimeAccount):
        acc = holder
    elif isinstance(holder, Volunteer):
        acc = session.scalar(select(TimeAccount).where(TimeAccount.volunteer_id == holder.id))
    else:
        vol = session.scalar(select(Volunteer).where(Volunteer.follower_id == holder.id))
        acc = session.scalar(select(TimeAccount).where(
            TimeAccount.volunteer_id == vol.id if vol is not None else TimeAccount.follower_id == holder.id))
    if acc is None:
        return []
    return _lines(session, acc.id, start=datetime(year, 1, 1, tzinfo=CHINA), end=datetime(year + 1, 1, 1, tzinfo=CHINA),
                  newest_first=newest_first, offset=offset, limit=limit)


# ---- the audit ----------------------------------------------------------------------------

@dataclass
class AuditReport:
    accounts: int = 0
    transactions: int = 0
    pool_in: int = 0
    pool_out: int = 0
    pool_balance: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def audit(session: Session) -> AuditReport:
    """Prove the ledger: every cached balance equals the sum of its entries, every
    transaction sums to zero, no personal balance (nor the pool) is negative, deposits come
    only from approved hour records, the pool's in and out match its balance, every grant
    has its approved request (by someone other than the requester) and every gift went to
    family linked at the time."""
    report = AuditReport()
    sums = dict(session.execute(
        select(TimeEntry.account_id, func.coalesce(func.sum(TimeEntry.minutes), 0)).group_by(TimeEntry.account_id)).all())
    for acc in session.scalars(select(TimeAccount).order_by(TimeAccount.id)):
        report.accounts += 1
        total = int(sums.get(acc.id, 0))
        if total != acc.balance:
            report.problems.append(f"account {acc.code}: balance {acc.balance} != entries {total}")
        if not acc.allow_negative and total < 0:
            report.problems.append(f"account {acc.code}: negative balance {total}")
    report.transactions = session.scalar(select(func.count(TimeTransaction.id))) or 0
    unbalanced = session.execute(
        select(TimeEntry.tx_id, func.sum(TimeEntry.minutes)).group_by(TimeEntry.tx_id)
        .having(func.sum(TimeEntry.minutes) != 0)).all()
    for tx_id, total in unbalanced:
        report.problems.append(f"transaction {tx_id}: entries sum to {total}, not 0")
    empty = session.scalars(select(TimeTransaction.id).where(
        ~TimeTransaction.id.in_(select(TimeEntry.tx_id)))).all()
    for tx_id in empty:
        report.problems.append(f"transaction {tx_id}: no entries")
    bad_deposits = session.execute(
        select(TimeTransaction.id, HourRecord.state).join(HourRecord, HourRecord.id == TimeTransaction.hour_record_id)
        .where(TimeTransaction.kind == "deposit", HourRecord.state != "approved",
               ~TimeTransaction.id.in_(select(TimeTransaction.reverses_id).where(TimeTransaction.reverses_id.is_not(None))))
    ).all()
    for tx_id, state in bad_deposits:
        report.problems.append(f"transaction {tx_id}: deposit from a {state} hour record, not reversed")
    orphan = session.scalars(select(TimeTransaction.id).where(
        TimeTransaction.kind.in_(("deposit", "overflow")), TimeTransaction.hour_record_id.is_(None))).all()
    for tx_id in orphan:
        report.problems.append(f"transaction {tx_id}: deposit or overflow without an hour record")
    _audit_pool(session, report)
    _audit_grants(session, report)
    _audit_gifts(session, report)
    return report


def _audit_pool(session: Session, report: AuditReport) -> None:
    pool = session.scalar(select(TimeAccount).where(TimeAccount.code == POOL))
    if pool is None:
        return
    rows = session.execute(select(TimeTransaction.kind, TimeEntry.minutes)
                           .join(TimeEntry, TimeEntry.tx_id == TimeTransaction.id)
                           .where(TimeEntry.account_id == pool.id)).all()
    for kind, minutes in rows:
        if kind in POOL_IN_KINDS and minutes < 0 or kind == "grant" and minutes > 0:
            report.problems.append(f"pool: a {kind} entry of {minutes} goes the wrong way")
        elif kind not in POOL_IN_KINDS + ("grant", "reversal"):
            report.problems.append(f"pool: a {kind} entry, which never touches the pool")
        if minutes > 0:
            report.pool_in += minutes
        else:
            report.pool_out -= minutes
    report.pool_balance = pool.balance
    if report.pool_in - report.pool_out != pool.balance:
        report.problems.append(f"pool: in {report.pool_in} - out {report.pool_out} != balance {pool.balance}")


def _audit_grants(session: Session, report: AuditReport) -> None:
    grants = {g.tx_id: g for g in session.scalars(select(PoolGrant).where(PoolGrant.tx_id.is_not(None)))}
    for tx in session.scalars(select(TimeTransaction).where(TimeTransaction.kind == "grant")):
        g = grants.pop(tx.id, None)
        if g is None or g.state != "approved":
            report.problems.append(f"transaction {tx.id}: a grant without an approved request")
        elif g.decided_by is None or g.decided_by == g.requested_by or not tx.approved_by:
            report.problems.append(f"transaction {tx.id}: a grant not approved by a second coordinator")
    for g in session.scalars(select(PoolGrant).where(PoolGrant.state == "approved", PoolGrant.tx_id.is_(None))):
        report.problems.append(f"grant {g.id}: approved but never paid")


def _audit_gifts(session: Session, report: AuditReport) -> None:
    for tx in session.scalars(select(TimeTransaction).where(TimeTransaction.kind == "gift")):
        entries = list(session.scalars(select(TimeEntry).where(TimeEntry.tx_id == tx.id)))
        giver = next((session.get(TimeAccount, e.account_id) for e in entries if e.minutes < 0), None)
        taker = next((session.get(TimeAccount, e.account_id) for e in entries if e.minutes > 0), None)
        member = follower_of(session, taker) if taker is not None else None
        linked = giver is not None and member is not None and session.scalar(select(TimeBankFamily.id).where(
            TimeBankFamily.volunteer_id == giver.volunteer_id, TimeBankFamily.follower_id == member.id,
            TimeBankFamily.created_at <= tx.created_at,
            or_(TimeBankFamily.ended_at.is_(None), TimeBankFamily.ended_at >= tx.created_at)).limit(1))
        if not linked:
            report.problems.append(f"transaction {tx.id}: a gift to someone not linked as family then")
