"""No poison pill: how every queue the scheduler and the worker drain applies its items.

A queue's items are applied together when they can be (one transaction: the fast path) and
one by one when that fails. An item that fails on its own, twice, while the database
answers, is *set aside*: written to `dead_letters` (one row per item, with its last error
and how often it failed) and counted in `/metrics` (`volbot_dead_letters`) and in
`volbot push status`; every other item is applied. When the database does not answer, the
failure is the database's, not the item's: nothing is set aside and the caller keeps the
untried items for its next pass.

Dead letters live in SQL (see `store.models.DeadLetter` for why). An operator reads them
with `volbot push dead-letters`; fixing the cause and clearing them is theirs to do.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Callable, Generic, Iterable, TypeVar

from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from store.models import DeadLetter

log = logging.getLogger("volbot.dead_letters")

T = TypeVar("T")


@dataclass
class Drained(Generic[T]):
    """What `drain` did: items applied, items set aside (`dead`), and the items not tried
    because the database stopped answering (`error` is that failure; the caller keeps
    `left`)."""

    applied: int = 0
    dead: list[T] = field(default_factory=list)
    left: list[T] = field(default_factory=list)
    error: BaseException | None = None


def printable(raw: bytes | str) -> str:
    """An item as text any database stores (PostgreSQL's text refuses NUL; bytes may not
    be UTF-8)."""
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", "backslashreplace")
    return raw.replace("\x00", "\\x00")


def digest(raw: bytes | str) -> str:
    """A key for an item that has no id of its own (a queued payload)."""
    return hashlib.sha256(raw if isinstance(raw, bytes) else raw.encode("utf-8", "surrogatepass")).hexdigest()


def database_answers(services) -> bool:
    try:
        with services.db.transaction() as session:
            session.execute(text("SELECT 1"))
        return True
    except Exception:  # noqa: BLE001 - any failure means "not now"
        return False


def set_aside(services, queue: str, key: str, item: str, error: BaseException, now: datetime) -> None:
    """Record (or count again) a dead item, in its own transaction."""
    reason = printable(f"{type(error).__name__}: {error}")[:2000]
    for _ in range(2):  # a concurrent drainer may insert the same item first: then update it
        try:
            with services.db.transaction() as session:
                row = session.scalar(select(DeadLetter).where(DeadLetter.queue == queue, DeadLetter.item_key == key))
                if row is None:
                    session.add(DeadLetter(queue=queue, item_key=key, item=printable(item), error=reason,
                                           first_at=now, last_at=now))
                else:
                    row.failures += 1
                    row.error, row.last_at = reason, now
            break
        except IntegrityError:
            continue
    log.error("%s: item %s set aside after failing on its own: %s", queue, key, reason)


def drain(services, queue: str, items: Iterable[T], apply: Callable[[Session, T], object], *,
          apply_all: Callable[[Session, list[T]], object] | None = None,
          key: Callable[[T], str], show: Callable[[T], str] = repr) -> Drained[T]:
    """Apply `items`: all in one transaction with `apply_all` if given, else (or when that
    fails) each in its own transaction with `apply`; see the module doc for what happens
    to an item that fails alone. Each returns how many items it handled (None: all it was
    given), summed in `Drained.applied`. Never raises for an item; `Drained.error` says
    when the database stopped answering."""
    items = list(items)
    done: Drained[T] = Drained()
    if not items:
        return done
    if apply_all is not None:
        try:
            with services.db.transaction() as session:
                handled = apply_all(session, items)
            done.applied = _count(handled, len(items))
            return done
        except Exception as e:  # noqa: BLE001 - which item, or the database? Find out one by one.
            log.warning("%s: a batch of %d failed (%s); applying them one by one", queue, len(items),
                        type(e).__name__)
    for i, item in enumerate(items):
        error = handled = None
        for _ in range(2):  # once more: a lock conflict or a dropped connection is not the item's fault
            try:
                with services.db.transaction() as session:
                    handled = apply(session, item)
                error = None
                break
            except Exception as e:  # noqa: BLE001 - sorted out below
                error = e
        if error is None:
            done.applied += _count(handled, 1)
        elif not database_answers(services):
            done.left, done.error = items[i:], error
            return done
        else:
            set_aside(services, queue, key(item), show(item), error, services.clock.now())
            done.dead.append(item)
    return done


def _count(handled, given: int) -> int:
    return given if handled is None else int(handled)


def counts(session: Session) -> dict[str, int]:
    """Dead letters per queue."""
    return dict(session.execute(select(DeadLetter.queue, func.count()).group_by(DeadLetter.queue)).all())


def latest(session: Session, limit: int = 20) -> list[DeadLetter]:
    return list(session.scalars(select(DeadLetter).order_by(DeadLetter.last_at.desc(), DeadLetter.id.desc())
                                .limit(limit)))
