"""The time bank (时间银行): a double-entry ledger of minutes, separate from hour records.

Every movement is a `TimeTransaction` whose `TimeEntry` rows sum to zero. Volunteers hold
accounts (`vol:<id>`), and so may residents who were given or granted minutes
(`fol:<follower id>`); system accounts stand on the other side: `system:issued` (minutes
created from approved service hours), `system:redeemed` (minutes spent on service orders)
and `system:pool`, the district's pool (donations, hours above the storage cap, expired
idle balances in; grants to residents in need out), which never goes below zero.
Entries and transactions are immutable (an ORM guard refuses updates and deletes); a
reversal is a new transaction. `TimeAccount.balance` is a cache proved by the audit.

Family links (`TimeBankFamily`) are made in chat: a volunteer's invite code
(`TimeBankInvite`), accepted by the family member's follower account; either side ends a
link (the row stays, with `ended_at`, as the record of who could spend when). Pool grants
(`PoolGrant`) are requested by a coordinator and approved one team level up before any
minute moves.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String, event, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from store.models.base import Base, utcnow

TX_KINDS = ("deposit", "spend", "reversal", "gift", "donate", "overflow", "grant", "expire")
ISSUED = "system:issued"
REDEEMED = "system:redeemed"
POOL = "system:pool"
GRANT_STATES = ("pending", "approved", "rejected")


class TimeAccount(Base):
    __tablename__ = "time_accounts"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)  # "vol:<id>" or "system:…"
    volunteer_id: Mapped[int | None] = mapped_column(ForeignKey("volunteers.id"), unique=True)
    # A resident's own account (minutes given by family or granted from the pool).
    follower_id: Mapped[int | None] = mapped_column(ForeignKey("followers.id"), unique=True)
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
    # Who approved it, when someone other than the actor had to (a pool grant's approver).
    approved_by: Mapped[str | None] = mapped_column(String(64))
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
    """A family member (a follower) who may pay their own orders with the volunteer's time,
    from acceptance (`created_at`) until either side ends it (`ended_at`)."""

    __tablename__ = "time_bank_family"
    __table_args__ = (
        # One live link per pair; ended links stay as history.
        Index("uq_time_bank_family_live", "volunteer_id", "follower_id", unique=True,
              sqlite_where=text("ended_at IS NULL"), postgresql_where=text("ended_at IS NULL")),
        Index("ix_time_bank_family_follower", "follower_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    volunteer_id: Mapped[int] = mapped_column(ForeignKey("volunteers.id"))
    follower_id: Mapped[int] = mapped_column(ForeignKey("followers.id", ondelete="CASCADE"))
    relation: Mapped[str] = mapped_column(String(16), default="")  # 父母, 配偶, …
    # The volunteer chose to get the notices of this member's orders (accepted, served) and
    # may confirm their completion.
    notices: Mapped[bool] = mapped_column(default=False, server_default="0")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    ended_at: Mapped[datetime | None]
    ended_by: Mapped[str | None] = mapped_column(String(32))  # "volunteer" | "member" | "operator"


class TimeBankInvite(Base):
    """A volunteer's invitation of a family member: the code they pass on, once, in time."""

    __tablename__ = "time_bank_invites"

    id: Mapped[int] = mapped_column(primary_key=True)
    volunteer_id: Mapped[int] = mapped_column(ForeignKey("volunteers.id"), index=True)
    code: Mapped[str] = mapped_column(String(8), unique=True)
    relation: Mapped[str] = mapped_column(String(16), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]
    used_by: Mapped[int | None] = mapped_column(ForeignKey("followers.id", ondelete="SET NULL"))


class PoolGrant(Base):
    """Pool minutes for a resident in need: requested with a reason by a coordinator,
    approved (or rejected) by a coordinator one team level up; the transfer is `tx_id`."""

    __tablename__ = "time_pool_grants"
    __table_args__ = (Index("ix_time_pool_grants_state", "state", "requested_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    follower_id: Mapped[int] = mapped_column(ForeignKey("followers.id"), index=True)  # who receives
    minutes: Mapped[int]
    reason: Mapped[str] = mapped_column(String(255))
    # The recipient's birth year, from the date the age rule was checked against (the
    # database keeps no full birth date: docs/privacy.md).
    birth_year: Mapped[int | None]
    team_id: Mapped[int] = mapped_column(ForeignKey("teams.id"))  # the requester's team
    requested_by: Mapped[int] = mapped_column(ForeignKey("coordinators.id"))
    requested_at: Mapped[datetime] = mapped_column(default=utcnow)
    state: Mapped[str] = mapped_column(String(16), default="pending")  # one of GRANT_STATES
    decided_by: Mapped[int | None] = mapped_column(ForeignKey("coordinators.id"))
    decided_at: Mapped[datetime | None]
    note: Mapped[str | None] = mapped_column(String(255))
    tx_id: Mapped[int | None] = mapped_column(ForeignKey("time_transactions.id"), unique=True)


class ImmutableLedger(Exception):
    pass


@event.listens_for(TimeEntry, "before_update")
@event.listens_for(TimeEntry, "before_delete")
@event.listens_for(TimeTransaction, "before_update")
@event.listens_for(TimeTransaction, "before_delete")
def _refuse_change(mapper, connection, target):
    raise ImmutableLedger(f"{type(target).__name__} rows are immutable; post a reversal instead")
