"""`volbot timebank` commands for family links, pool grants, idle expiry and the year's
passbook (the audit, statement and reversal are with the volunteers' commands):

    volbot timebank family NUMBER | family-end LINK
    volbot timebank grant request --coordinator ID (--openid O | --order D… | --volunteer N)
                                  --minutes M --reason … [--born YYYY-MM-DD]
    volbot timebank grant approve|reject GRANT --coordinator ID [--note …] / grant list [--state S]
    volbot timebank expire
    volbot timebank passbook NUMBER [--year Y]

Output never contains a full name, phone or ID number.
"""

from __future__ import annotations

import click
from sqlalchemy import select

from bot.commands import operator_session, shared_group


def _volunteer(session, number: str):
    from store.models import Volunteer

    vol = session.scalar(select(Volunteer).where(Volunteer.number == number.strip().upper()))
    if vol is None:
        raise click.ClickException(f"no volunteer numbered {number}")
    return vol


def _coordinator(session, coordinator_id: int):
    from store.models import Coordinator

    coord = session.get(Coordinator, coordinator_id)
    if coord is None or not coord.active:
        raise click.ClickException(f"no active coordinator {coordinator_id}")
    return coord


def _recipient(session, openid: str | None, order: str | None, number: str | None):
    """The follower a grant is for: by openid, by an order they placed, or a volunteer number."""
    from store.models import Follower, Order

    given = [v for v in (openid, order, number) if v]
    if len(given) != 1:
        raise click.UsageError("give exactly one of --openid, --order, --volunteer")
    if openid:
        follower = session.scalar(select(Follower).where(Follower.openid == openid))
    elif order:
        row = session.scalar(select(Order).where(Order.number == order.strip().upper()))
        follower = row.follower if row is not None else None
    else:
        follower = _volunteer(session, number).follower
    if follower is None:
        raise click.ClickException("no such resident (or they no longer follow the account)")
    return follower


def register(main: click.Group) -> None:
    bank = shared_group(main, "timebank", "The time bank (时间银行).")
    grant = click.Group("grant", help="Pool grants to residents in need (approved one level up).")
    bank.add_command(grant)

    @bank.command("family")
    @click.argument("number")
    def family(number):
        """A volunteer's family links, live and ended (made in chat: 邀请家人 / 接受邀请)."""
        from store.models import TimeBankFamily

        with operator_session() as (svc, s):
            vol = _volunteer(s, number)
            links = s.scalars(select(TimeBankFamily).where(TimeBankFamily.volunteer_id == vol.id)
                              .order_by(TimeBankFamily.id)).all()
            if not links:
                click.echo(f"{vol.number}: no family links")
            for link in links:
                state = f"ended {link.ended_at:%Y-%m-%d} by {link.ended_by}" if link.ended_at else "live"
                click.echo(f"{link.id}\t{link.relation or '-'}\tfollower {link.follower_id}\t"
                           f"since {link.created_at:%Y-%m-%d}\tnotices {'on' if link.notices else 'off'}\t{state}")

    @bank.command("family-end")
    @click.argument("link_id", type=int)
    def family_end(link_id):
        """End a family link as an operator (both sides are told)."""
        from rules import timebank
        from rules import timebank_family as family
        from store.models import TimeBankFamily

        with operator_session() as (svc, s):
            link = s.get(TimeBankFamily, link_id)
            if link is None:
                raise click.ClickException(f"no family link {link_id}")
            try:
                family.end_link(s, link, by=None, now=svc.clock.now())
            except timebank.TimeBankError as e:
                raise click.ClickException(str(e)) from None
            click.echo(f"family link {link_id}: ended")

    @grant.command("request")
    @click.option("--coordinator", "coordinator_id", type=int, required=True, help="the requesting coordinator")
    @click.option("--openid")
    @click.option("--order", help="an order number: the resident who placed it")
    @click.option("--volunteer", "number", help="a volunteer number")
    @click.option("--minutes", type=int, required=True)
    @click.option("--reason", required=True)
    @click.option("--born", type=click.DateTime(["%Y-%m-%d"]), help="the resident's date of birth, as checked")
    def grant_request(coordinator_id, openid, order, number, minutes, reason, born):
        """Ask for pool minutes for a resident in need; nothing moves until approved."""
        from rules import timebank
        from rules import timebank_pool as pool

        with operator_session() as (svc, s):
            follower = _recipient(s, openid, order, number)
            try:
                g = pool.request_grant(s, _coordinator(s, coordinator_id), follower, minutes, reason,
                                           now=svc.clock.now(), policy=svc.timebank_policy,
                                           birth_date=born.date() if born else None)
            except timebank.TimeBankError as e:
                raise click.ClickException(str(e)) from None
            click.echo(f"grant {g.id}: {g.minutes} min pending approval one level up")

    def decide(grant_id, coordinator_id, approve, note):
        from rules import timebank, volunteering
        from rules import timebank_pool as pool
        from store.models import PoolGrant

        with operator_session() as (svc, s):
            g = s.get(PoolGrant, grant_id)
            if g is None:
                raise click.ClickException(f"no grant {grant_id}")
            try:
                pool.decide_grant(s, g, _coordinator(s, coordinator_id), approve=approve, now=svc.clock.now(),
                                      note=note, rules=volunteering.rules().bank)
            except timebank.TimeBankError as e:
                raise click.ClickException(str(e)) from None
            click.echo(f"grant {g.id}: {g.state}" + (f" (transaction {g.tx_id})" if g.tx_id else ""))

    @grant.command("approve")
    @click.argument("grant_id", type=int)
    @click.option("--coordinator", "coordinator_id", type=int, required=True)
    @click.option("--note", default="")
    def grant_approve(grant_id, coordinator_id, note):
        """Approve a pending grant: the pool pays it, once."""
        decide(grant_id, coordinator_id, True, note)

    @grant.command("reject")
    @click.argument("grant_id", type=int)
    @click.option("--coordinator", "coordinator_id", type=int, required=True)
    @click.option("--note", required=True)
    def grant_reject(grant_id, coordinator_id, note):
        """Reject a pending grant, with a note."""
        decide(grant_id, coordinator_id, False, note)

    @grant.command("list")
    @click.option("--state", type=click.Choice(["pending", "approved", "rejected"]))
    def grant_list(state):
        """Grants, newest first."""
        from store.models import PoolGrant

        with operator_session() as (svc, s):
            q = select(PoolGrant).order_by(PoolGrant.id.desc())
            if state:
                q = q.where(PoolGrant.state == state)
            for g in s.scalars(q):
                click.echo(f"{g.id}\t{g.state}\t{g.minutes} min\tfollower {g.follower_id}\t"
                           f"by coordinator {g.requested_by}\tdecided by {g.decided_by or '-'}\t{g.reason}")

    @bank.command("expire")
    def expire():
        """Move balances idle past TIMEBANK_IDLE_EXPIRY_DAYS to the pool (none when unset)."""
        from rules import timebank_pool as pool

        with operator_session() as (svc, s):
            posted = pool.expire_idle(s, svc.clock.now(), svc.timebank_policy)
            click.echo(f"{len(posted)} idle balance(s) moved to the pool")

    @bank.command("passbook")
    @click.argument("number")
    @click.option("--year", type=int, default=None, help="a calendar year (default: this one)")
    def passbook(number, year):
        """Every entry of a volunteer's account in a year, with the balance after each."""
        from rules import timebank

        with operator_session() as (svc, s):
            vol = _volunteer(s, number)
            year = year or svc.clock.now().astimezone(timebank.CHINA).year
            lines = timebank.passbook_year(s, vol, year)
            click.echo(f"{vol.number} {year}: {len(lines)} entries")
            for line in lines:
                click.echo(f"{line.at.astimezone(timebank.CHINA):%Y-%m-%d %H:%M}\t{line.label}\t{line.minutes:+d}\t"
                           f"= {line.balance_after}\t{line.reason}")

