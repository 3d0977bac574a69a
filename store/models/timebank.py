"""The time bank (时间银行): a double-entry ledger of minutes, separate from hour records.

Every movement is a `TimeTransaction` whose `TimeEntry` rows sum to zero. Volunteers hold
accounts; two system accounts stand on the other side: `system:issued` (minutes created
from approved service hours) and `system:redeemed` (minutes spent on service orders).
Entries and transactions are immutable (an ORM guard refuses updates and deletes); a
reversal is a new transaction. `TimeAccount.balance` is a cache proved by the audit.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String, event
from sqlalchemy.orm import Mapped, mapped_column, relationship

from store.models.base import Base, utcnow

TX_KINDS = ("deposit", "spend", "reversal")
ISSUED = "system:issued"
REDEEMED = "system:redeemed"


class TimeAccount(Base):
    __tablename__ = "time_accounts"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)  # "vol:<id>" or "system:…"
    volunteer_id: Mapped[int | None] = mapped_column(ForeignKey("volunteers.id"), unique=True)
    # Cached sum of this account's entries, kept under a row lock; the audit proves it.
    balance: Mapped[int] = mapped_column(Integer, default=0)
    allow_negative: Mapped[bool] = mapped_column(default=False)  # system accounts only
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class TimeTransaction(Base):
    __tablename__ = "time_transactions"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # one of TX_KINDS
    # One deposit per hour record, one spend per order, one reversal per transaction.
    idempotency_key: Mapped[str] = mapped_column(String(96), unique=True)
    hour_record_id: Mapped[int | None] = mapped_column(ForeignKey("hour_records.id"), index=True)
    order_ref: Mapped[str | None] = mapped_column(String(64), index=True)
    reverses_id: Mapped[int | None] = mapped_column(ForeignKey("time_transactions.id"), unique=True)
    actor: Mapped[str] = mapped_column(String(64))  # "coordinator:3", "follower:12", "cli:…"
    reason: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    entries: Mapped[list["TimeEntry"]] = relationship(back_populates="tx")


class TimeEntry(Base):
    __tablename__ = "time_entries"
    __table_args__ = (Index("ix_time_entries_account_created", "account_id", "created_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tx_id: Mapped[int] = mapped_column(ForeignKey("time_transactions.id"), index=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("time_accounts.id"))
    minutes: Mapped[int]  # + credit, - debit
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    tx: Mapped[TimeTransaction] = relationship(back_populates="entries")
    account: Mapped[TimeAccount] = relationship()


class TimeBankFamily(Base):
    """A family member (a follower) the volunteer allows to pay orders with their time."""

    __tablename__ = "time_bank_family"
    __table_args__ = (Index("uq_time_bank_family_pair", "volunteer_id", "follower_id", unique=True),)

    id: Mapped[int] = mapped_column(primary_key=True)
    volunteer_id: Mapped[int] = mapped_column(ForeignKey("volunteers.id"))
    follower_id: Mapped[int] = mapped_column(ForeignKey("followers.id", ondelete="CASCADE"))
    relation: Mapped[str] = mapped_column(String(16), default="")  # 父母, 配偶, …
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ImmutableLedger(Exception):
    pass


@event.listens_for(TimeEntry, "before_update")
@event.listens_for(TimeEntry, "before_delete")
@event.listens_for(TimeTransaction, "before_update")
@event.listens_for(TimeTransaction, "before_delete")
def _refuse_change(mapper, connection, target):
    raise ImmutableLedger(f"{type(target).__name__} rows are immutable; post a reversal instead")
