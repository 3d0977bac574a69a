"""`volbot order candidates | assign | offer-next | due` against the test database."""

from __future__ import annotations

import click
import pytest
from sqlalchemy import select

import bot.cli  # noqa: F401 - the CLI first: its modules import it
from bot.commands import dispatch as commands
from store.models import Offer, Order, Volunteer
from tests.seeds import apply
from tests.test_activities_cli import env, run  # noqa: F401 - the same test database for the CLI
from tests.test_dispatch import new_order


@pytest.fixture
def volbot():
    group = click.Group("volbot")
    commands.register(group)
    return group


def test_candidates_assign_and_offer_next(svc, volbot, env):  # noqa: F811 - env: the fixture imported above
    apply(svc, ["dispatch_world"])
    with svc.db.transaction() as s:
        number = new_order(s, svc.clock.now()).number
    code, out = run(volbot, env, "order", "candidates", number)
    lines = out.splitlines()
    assert code == 0 and "樱园社区" in lines[0], out
    assert lines[1].startswith(" 1. KW2026100001 李师傅   55: 具备“便民维修”技能; 同社区（樱园社区）+40"), out
    assert "KW2026100005 孙师傅   30 (未关注公众号，无法推送)" in lines[4] and "樱园小区" not in out
    code, out = run(volbot, env, "order", "offer-next", number)
    assert code == 0 and "offered to KW2026100001 (score 55)" in out, out
    code, out = run(volbot, env, "order", "assign", number, "kw2026100003", "--reason", "熟悉这家")
    assert code == 0 and "offered to KW2026100003" in out, out
    assert run(volbot, env, "order", "assign", number, "KW0")[0] != 0
    with svc.db.transaction() as s:
        states = dict(s.execute(select(Volunteer.number, Offer.state).join(Offer, Offer.volunteer_id == Volunteer.id)).all())
        assert states == {"KW2026100001": "withdrawn", "KW2026100003": "offered"}
        assert s.scalar(select(Order.status)) == "offered"
    code, out = run(volbot, env, "order", "due")  # the new offer is not due for 30 minutes
    assert code == 0 and out.strip() == "0 handled", out
