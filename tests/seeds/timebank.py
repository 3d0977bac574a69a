"""Time-bank set-ups: the dispatch district (tests/seeds/dispatch.py) with 王师傅
(o_dv_wang, KW2026100002) holding 3 hours from an approved activity record."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from sqlalchemy import select

from rules import volunteering
from store.models import HourRecord, Volunteer
from tests.seeds import seed
from tests.seeds.dispatch import dispatch_world


@seed
def timebank_world(session):
    dispatch_world(session)
    wang = session.scalar(select(Volunteer).where(Volunteer.number == "KW2026100002"))
    end = datetime.now(timezone.utc) - timedelta(days=3)
    record = HourRecord(volunteer_id=wang.id, source="activity", source_ref="seed:timebank", minutes=180,
                        started_at=end - timedelta(minutes=180), ended_at=end)
    session.add(record)
    session.flush()
    volunteering.decide_hours(session, [record.id], approve=True, now=end, coordinator=None, actor="seed")
