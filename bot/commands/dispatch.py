"""`volbot order` commands for dispatch (the rules are in `rules.dispatch`).

    volbot order candidates ORDER            the ranking, with each volunteer's reasons
    volbot order assign ORDER VOLUNTEER      offer it to that volunteer (reassigns if taken)
    volbot order offer-next ORDER            ask the best candidate not asked yet (or escalate)
    volbot order approve-minutes ORDER       credit the minutes claimed above the cap
    volbot order due                         run the due work once (what the scheduler does)

Output never contains the resident's address or phone.
"""

from __future__ import annotations

import click
from sqlalchemy import select

from bot.commands import operator_session, shared_group


def _order(session, number: str):
    from rules import dispatch

    order = dispatch.order_by_number(session, number.strip().upper())
    if order is None:
        raise click.ClickException(f"no order numbered {number}")
    return order


def register(main) -> None:
    group = shared_group(main, "order", "Service orders: dispatch to volunteers.")

    @group.command("candidates")
    @click.argument("number")
    def candidates(number):
        """Print the ranked candidates for ORDER with their scores and reasons."""
        from rules import dispatch

        with operator_session() as (svc, s):
            order = _order(s, number)
            ranked = dispatch.rank(s, order, svc.clock.now())
            click.echo(f"{order.number} {order.sub_name} [{order.status}] "
                       f"{order.community.name if order.community else '-'}")
            if not ranked:
                click.echo("no active volunteer has this skill")
            for i, c in enumerate(ranked, 1):
                flag = f" ({c.note})" if c.note else ""
                click.echo(f"{i:>2}. {c.volunteer.number} {c.volunteer.name} {c.score:>4}{flag}: "
                           + "; ".join(c.reasons))

    @group.command("assign")
    @click.argument("number")
    @click.argument("volunteer")
    @click.option("--reason", default="", help="Why (shown in the order's history).")
    def assign(number, volunteer, reason):
        """Offer ORDER to VOLUNTEER (a volunteer number), as a coordinator would."""
        from rules import dispatch
        from store.models import Volunteer

        with operator_session() as (svc, s):
            order = _order(s, number)
            vol = s.scalar(select(Volunteer).where(Volunteer.number == volunteer.strip().upper()))
            if vol is None:
                raise click.ClickException(f"no volunteer numbered {volunteer}")
            try:
                offer = dispatch.assign(s, order, vol, svc.clock.now(), coordinator=None, reason=reason,
                                        settings=svc.dispatch_settings)
            except dispatch.DispatchError as e:
                raise click.ClickException(e.message) from None
            click.echo(f"{order.number} offered to {vol.number} (score {offer.score}), answer due {offer.due_at:%H:%M} UTC")

    @group.command("offer-next")
    @click.argument("number")
    def offer_next(number):
        """Ask the best candidate of ORDER not asked yet; with nobody left, escalate."""
        from rules import dispatch

        with operator_session() as (svc, s):
            order = _order(s, number)
            offer = dispatch.offer_next(s, order, svc.clock.now(), svc.dispatch_settings)
            if offer is not None:
                click.echo(f"{order.number} offered to {offer.volunteer.number} (score {offer.score})")
            else:
                click.echo(f"{order.number}: nobody offered; status {order.status}")

    @group.command("approve-minutes")
    @click.argument("number")
    def approve_minutes(number):
        """Credit the minutes the volunteer claimed for ORDER above the cap."""
        from rules import dispatch

        with operator_session() as (svc, s):
            order = _order(s, number)
            try:
                minutes = dispatch.approve_claimed_minutes(s, order, svc.clock.now(), coordinator=None)
            except dispatch.DispatchError as e:
                raise click.ClickException(e.message) from None
            click.echo(f"{order.number}: {minutes} minutes credited")

    @group.command("due")
    def due():
        """Expire unanswered offers, auto-confirm and offer waiting orders once."""
        from bot.cli import build_services
        from rules import dispatch

        svc = build_services()
        try:
            click.echo(f"{dispatch.run_due(svc)} handled")
        finally:
            svc.close()
