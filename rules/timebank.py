"""Time-bank operations: deposit from approved hours, spend on orders, reverse, audit.

Rules:
- minutes are created only by `deposit_for_hours`, from an *approved* hour record, once
  per record (idempotency key `deposit:hour:<id>`), at the configured rate, up to the cap;
- spending needs the volunteer or a designated family member, and never takes a balance
  below zero; the same order is paid once (`spend:<order_ref>`);
- entries never change; `reverse` posts the opposite entries as a new transaction;
- every posting locks the accounts it touches (`SELECT … FOR UPDATE` on PostgreSQL; SQLite
  serialises writers), so the cached balances and the checks stay true under concurrency.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import bindparam, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from store.models import Follower, HourRecord, TimeAccount, TimeBankFamily, TimeEntry, TimeTransaction, Volunteer
from store.models.timebank import ISSUED, REDEEMED


class TimeBankError(ValueError):
    """A refused operation; the message is a short Chinese sentence for the user."""


@dataclass(frozen=True)
class BankRules:
    rate_numerator: int = 1
    rate_denominator: int = 1
    cap_minutes: int | None = 90000

    def credit_for(self, service_minutes: int) -> int:
        return service_minutes * self.rate_numerator // self.rate_denominator


def _account(session: Session, code: str, volunteer_id: int | None = None,
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
                acc = TimeAccount(code=code, volunteer_id=volunteer_id, allow_negative=allow_negative)
                session.add(acc)
                session.flush()
        except IntegrityError:  # created meanwhile by a concurrent transaction
            acc = session.scalar(stmt)
    return acc


def lock_issuing(session: Session) -> TimeAccount:
    """Lock the issuing account: every deposit takes it first, so approvals that deposit
    (and check stars) run one after another instead of racing."""
    return _account(session, ISSUED, allow_negative=True)


def account_for(session: Session, volunteer: Volunteer, lock: bool = True) -> TimeAccount:
    return _account(session, f"vol:{volunteer.id}", volunteer_id=volunteer.id, lock=lock)


_BALANCE = select(TimeAccount.balance).where(TimeAccount.volunteer_id == bindparam("volunteer_id"))


def balance(session: Session, volunteer: Volunteer) -> int:
    """Minutes held (0 without an account); read from the cache the audit proves."""
    value = session.scalar(_BALANCE, {"volunteer_id": volunteer.id})
    return value or 0


def _post(session: Session, *, kind: str, key: str, actor: str, reason: str, now: datetime,
          moves: list[tuple[TimeAccount, int]], hour_record_id: int | None = None,
          order_ref: str | None = None, reverses_id: int | None = None) -> TimeTransaction | None:
    """Write one balanced transaction; None if `key` was posted before."""
    if sum(m for _, m in moves) != 0:
        raise ValueError("unbalanced transaction")
    if session.scalar(select(TimeTransaction.id).where(TimeTransaction.idempotency_key == key)):
        return None
    for acc, minutes in moves:
        if not acc.allow_negative and acc.balance + minutes < 0:
            raise TimeBankError("时间银行余额不足。")
    tx = TimeTransaction(kind=kind, idempotency_key=key, actor=actor[:64], reason=reason[:255],
                         hour_record_id=hour_record_id, order_ref=order_ref,
                         reverses_id=reverses_id, created_at=now)
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


def deposit_for_hours(session: Session, record: HourRecord, *, actor: str, now: datetime,
                      rules: BankRules) -> TimeTransaction | None:
    """Credit an approved hour record once. Above the cap only what fits is credited."""
    if record.state != "approved":
        raise TimeBankError("只有审核通过的时长可以存入时间银行。")
    issued = lock_issuing(session)
    acc = account_for(session, record.volunteer)
    credit = rules.credit_for(record.minutes)
    reason = f"服务时长存入（记录 {record.id}，{record.minutes} 分钟）"
    if rules.cap_minutes is not None and acc.balance + credit > rules.cap_minutes:
        credit = max(0, rules.cap_minutes - acc.balance)
        reason += f"，已达存储上限，仅存入 {credit} 分钟"
    if credit <= 0:
        return None
    return _post(session, kind="deposit", key=f"deposit:hour:{record.id}", actor=actor,
                 reason=reason, now=now, moves=[(issued, -credit), (acc, credit)],
                 hour_record_id=record.id)


def may_spend(session: Session, volunteer: Volunteer, follower: Follower | None) -> bool:
    """The volunteer themself, or a family member they designated."""
    if follower is None:
        return False
    if volunteer.follower_id == follower.id:
        return True
    return session.scalar(select(TimeBankFamily.id).where(
        TimeBankFamily.volunteer_id == volunteer.id,
        TimeBankFamily.follower_id == follower.id)) is not None


def designate_family(session: Session, volunteer: Volunteer, follower: Follower, relation: str = "") -> None:
    exists = session.scalar(select(TimeBankFamily.id).where(
        TimeBankFamily.volunteer_id == volunteer.id, TimeBankFamily.follower_id == follower.id))
    if exists is None:
        session.add(TimeBankFamily(volunteer_id=volunteer.id, follower_id=follower.id, relation=relation[:16]))
        session.flush()


def spend_for_order(session: Session, volunteer: Volunteer, minutes: int, *, order_ref: str,
                    payer: Follower | None, now: datetime, actor: str | None = None) -> TimeTransaction | None:
    """Pay an order with time. Refused for anyone but the volunteer or their family, for
    non-positive amounts and when the balance is short. Paying the same order again is a no-op."""
    if minutes <= 0:
        raise TimeBankError("支付的时长必须大于零。")
    if not may_spend(session, volunteer, payer):
        raise TimeBankError("只有志愿者本人或其指定的家庭成员可以使用时间银行。")
    acc = account_for(session, volunteer)
    redeemed = _account(session, REDEEMED, allow_negative=True)
    return _post(session, kind="spend", key=f"spend:{order_ref}", actor=actor or f"follower:{payer.id}",
                 reason=f"支付服务订单 {order_ref}（{minutes} 分钟）", now=now,
                 moves=[(acc, -minutes), (redeemed, minutes)], order_ref=order_ref)


def reverse(session: Session, tx: TimeTransaction, *, actor: str, reason: str, now: datetime) -> TimeTransaction:
    """Post the opposite of `tx` (once). Refused if it would take a balance below zero,
    e.g. reversing a deposit whose minutes were already spent."""
    if tx.kind == "reversal":
        raise TimeBankError("冲正记录不能再次冲正。")
    if not reason.strip():
        raise TimeBankError("冲正需要说明原因。")
    entries = list(session.scalars(select(TimeEntry).where(TimeEntry.tx_id == tx.id).order_by(TimeEntry.id)))
    # Locked in the order the original took them, so reversals cannot deadlock with postings.
    locked = {e.account_id: session.scalar(
        select(TimeAccount).where(TimeAccount.id == e.account_id).with_for_update()
        .execution_options(populate_existing=True)) for e in entries}
    posted = _post(session, kind="reversal", key=f"reverse:{tx.id}", actor=actor,
                   reason=f"冲正交易 {tx.id}：{reason}", now=now,
                   moves=[(locked[e.account_id], -e.minutes) for e in entries],
                   hour_record_id=tx.hour_record_id, order_ref=tx.order_ref, reverses_id=tx.id)
    if posted is None:
        raise TimeBankError("这笔交易已经冲正过了。")
    return posted


@dataclass
class AuditReport:
    accounts: int = 0
    transactions: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def audit(session: Session) -> AuditReport:
    """Prove the ledger: every cached balance equals the sum of its entries, every
    transaction sums to zero, no personal balance is negative, deposits come only from
    approved hour records and never exceed what the record earned."""
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
        TimeTransaction.kind == "deposit", TimeTransaction.hour_record_id.is_(None))).all()
    for tx_id in orphan:
        report.problems.append(f"transaction {tx_id}: deposit without an hour record")
    return report


def statement(session: Session, volunteer: Volunteer, limit: int = 5) -> list[tuple[TimeTransaction, int]]:
    """The latest movements of a volunteer's account (存入 / 取出), newest first."""
    rows = session.execute(
        select(TimeTransaction, TimeEntry.minutes).join(TimeEntry, TimeEntry.tx_id == TimeTransaction.id)
        .join(TimeAccount, TimeAccount.id == TimeEntry.account_id)
        .where(TimeAccount.volunteer_id == volunteer.id)
        .order_by(TimeEntry.id.desc()).limit(limit)).all()
    return [(tx, minutes) for tx, minutes in rows]


@dataclass(frozen=True)
class PassbookLine:
    at: datetime
    kind: str  # one of TX_KINDS (or a kind added later)
    reason: str
    minutes: int  # + credit, - debit
    balance: int  # the account's balance after this entry


def passbook(session: Session, volunteer: Volunteer, start: datetime, end: datetime, *, limit: int | None = None,
             offset: int = 0) -> list[PassbookLine]:
    """A volunteer's ledger lines posted in [start, end), newest first, each with the balance
    after it: one query, the running balance summed by the database over the whole account
    (entries never change, so it is exact), only the period's lines read."""
    running = (select(TimeEntry.id.label("entry_id"), TimeEntry.minutes.label("minutes"),
                      TimeTransaction.created_at.label("at"), TimeTransaction.kind.label("kind"),
                      TimeTransaction.reason.label("reason"),
                      func.sum(TimeEntry.minutes).over(order_by=TimeEntry.id).label("balance"))
               .join(TimeTransaction, TimeTransaction.id == TimeEntry.tx_id)
               .join(TimeAccount, TimeAccount.id == TimeEntry.account_id)
               .where(TimeAccount.volunteer_id == volunteer.id)).subquery()
    query = (select(running).where(running.c.at >= start, running.c.at < end)
             .order_by(running.c.entry_id.desc()).offset(offset))
    if limit is not None:
        query = query.limit(limit)
    return [PassbookLine(r.at, r.kind, r.reason, int(r.minutes), int(r.balance)) for r in session.execute(query)]
