"""50 simultaneous sign-ups get 50 distinct numbers; the same ID number twice at once
registers once. Meant for PostgreSQL (row lock on the serial); SQLite serialises writers."""

from __future__ import annotations

import threading
from datetime import date, datetime, timezone

from sqlalchemy import func, select

from rules import pii, teams, volunteering
from store.models import Follower, Volunteer
from tests import seeds
from tests.seeds.volunteers import id_number

NOW = datetime(2026, 11, 28, 8, 0, tzinfo=timezone.utc)


def run_at_once(n, work):
    barrier = threading.Barrier(n)
    errors: list[BaseException] = []

    def go(i):
        try:
            barrier.wait(timeout=30)
            work(i)
        except BaseException as e:  # noqa: BLE001 - collected for the assertion
            errors.append(e)

    threads = [threading.Thread(target=go, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def sign_up(svc, i, idn):
    with svc.db.transaction() as s:
        f = Follower(openid=f"o_many_{i}", subscribed=True)
        s.add(f)
        s.flush()
        volunteering.register(s, pii_key=svc.settings.pii_key, follower=f, name=f"志愿者{i}",
                              phone="13900000000", id_number=pii.parse_id_number(idn, date(2026, 11, 28)),
                              team=teams.by_code(s, "VT-DF"), now=NOW)


def test_fifty_simultaneous_signups_get_distinct_numbers(svc):
    seeds.apply(svc, ["vol_teams"])
    errors = run_at_once(50, lambda i: sign_up(svc, i, id_number(born=date(1990, 1, 1), order=f"{i:03d}")))
    assert not errors, errors[:3]
    with svc.db.transaction() as s:
        numbers = list(s.scalars(select(Volunteer.number)))
    assert len(numbers) == 50 == len(set(numbers))
    assert sorted(numbers) == [f"KW2026{i:06d}" for i in range(1, 51)]


def test_same_id_number_at_once_registers_once(svc):
    seeds.apply(svc, ["vol_teams"])
    same = id_number(born=date(1991, 2, 2), order="555")
    errors = run_at_once(5, lambda i: sign_up(svc, i, same))
    assert len(errors) == 4 and all(isinstance(e, volunteering.VolunteerError) for e in errors), errors
    with svc.db.transaction() as s:
        assert s.scalar(select(func.count(Volunteer.id))) == 1
    # The refused sign-ups rolled their serials back with them; numbers never repeat.
    sign_up(svc, 99, id_number(born=date(1991, 2, 2), order="556"))
    with svc.db.transaction() as s:
        numbers = sorted(s.scalars(select(Volunteer.number)))
    assert numbers == ["KW2026000001", "KW2026000002"]
