"""`volbot` commands for teams, volunteers, hours, the time bank and coordinators.

    volbot import teams FILE                      (CSV or YAML; see README)
    volbot volunteer approve|reject NUMBER… [--reason …]
    volbot hours add --volunteer NUMBER --start … --end … --coordinator ID [--travel MIN]
    volbot hours approve|reject ID… [--reason …] / volbot hours list [--volunteer N] [--state S]
    volbot timebank audit | statement NUMBER | reverse TX --reason …   (more in bot/commands/timebank.py)
    volbot coordinator add --team CODE --openid OPENID --name NAME [--role …]

Output never contains an ID number or a full phone number.
"""

from __future__ import annotations

from datetime import datetime

import click
from sqlalchemy import select

from bot.commands import finish_audit, operator_session, shared_group


def _local(text: str) -> datetime:
    """'2026-11-28 09:00' in Beijing time → aware datetime."""
    from rules.volunteering import CHINA

    try:
        return datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=CHINA)
    except ValueError:
        raise click.BadParameter(f"{text!r}: use 'YYYY-MM-DD HH:MM' (Beijing time)") from None


def _volunteer(session, number: str):
    from store.models import Volunteer

    vol = session.scalar(select(Volunteer).where(Volunteer.number == number.strip().upper()))
    if vol is None:
        raise click.ClickException(f"no volunteer numbered {number}")
    return vol


def _coordinator(session, coordinator_id: int | None):
    from store.models import Coordinator

    if coordinator_id is None:
        return None
    coord = session.get(Coordinator, coordinator_id)
    if coord is None or not coord.active:
        raise click.ClickException(f"no active coordinator {coordinator_id}")
    return coord


def register(main: click.Group) -> None:
    imp = shared_group(main, "import", "Import district data from files.")
    volunteer = shared_group(main, "volunteer", "Volunteer sign-ups.")
    hours = shared_group(main, "hours", "Service-hour records.")
    bank = shared_group(main, "timebank", "The time bank (时间银行).")
    coordinator = shared_group(main, "coordinator", "Coordinators of teams.")

    @imp.command("teams")
    @click.argument("file", type=click.Path(exists=True, dir_okay=False))
    def import_teams(file):
        """Create or update the team tree from a CSV or YAML FILE (by team code)."""
        from rules import teams

        try:
            with operator_session() as (svc, s):
                result = teams.import_rows(s, teams.read_rows(file))
        except teams.TeamImportError as e:
            raise click.ClickException(str(e)) from None
        click.echo(f"teams: {result.created} created, {result.updated} updated; "
                   f"communities: {result.communities} created")

    def decide_volunteers(numbers, approve, reason):
        from rules import volunteering

        with operator_session() as (svc, s):
            for number in numbers:
                vol = _volunteer(s, number)
                try:
                    done = volunteering.decide_volunteer(s, vol, approve=approve, now=svc.clock.now(),
                                                         coordinator=None, reason=reason)
                except volunteering.VolunteerError as e:
                    raise click.ClickException(f"{number}: {e}") from None
                click.echo(f"{vol.number}: {vol.state}" + ("" if done else " (already decided)"))

    @volunteer.command("approve")
    @click.argument("numbers", nargs=-1, required=True)
    def volunteer_approve(numbers):
        """Approve pending sign-ups by volunteer NUMBER."""
        decide_volunteers(numbers, True, "")

    @volunteer.command("reject")
    @click.argument("numbers", nargs=-1, required=True)
    @click.option("--reason", required=True)
    def volunteer_reject(numbers, reason):
        """Reject pending sign-ups by volunteer NUMBER, with a reason."""
        decide_volunteers(numbers, False, reason)

    @hours.command("add")
    @click.option("--volunteer", "number", required=True, help="volunteer number, e.g. KW2026000042")
    @click.option("--start", required=True, help="'YYYY-MM-DD HH:MM' Beijing time")
    @click.option("--end", required=True)
    @click.option("--travel", default=0, type=int, help="travel minutes inside the span (not counted)")
    @click.option("--coordinator", "coordinator_id", required=True, type=int,
                  help="id of the coordinator recording it (must cover the volunteer's team)")
    @click.option("--description", default="")
    def hours_add(number, start, end, travel, coordinator_id, description):
        """Record a manual (补录) entry, pending approval."""
        from rules import volunteering

        with operator_session() as (svc, s):
            vol = _volunteer(s, number)
            try:
                rec = volunteering.record_hours(
                    s, vol, source="manual", started_at=_local(start), ended_at=_local(end),
                    travel_minutes=travel, recorded_by=_coordinator(s, coordinator_id),
                    description=description, now=svc.clock.now())
            except volunteering.VolunteerError as e:
                raise click.ClickException(str(e)) from None
            click.echo(f"record {rec.id}: {vol.number} {rec.minutes} min pending")

    def decide_hours(ids, approve, reason, coordinator_id):
        from rules import volunteering

        with operator_session() as (svc, s):
            try:
                results = volunteering.decide_hours(
                    s, list(ids), approve=approve, now=svc.clock.now(),
                    coordinator=_coordinator(s, coordinator_id),
                    actor=None if coordinator_id else "cli", reason=reason, bank=svc.timebank_policy)
            except volunteering.VolunteerError as e:
                raise click.ClickException(str(e)) from None
            for r in results:
                click.echo(f"record {r.record_id}: {r.outcome}" + (f" (reached {r.star} star)" if r.star else ""))

    @hours.command("approve")
    @click.argument("ids", nargs=-1, required=True, type=int)
    @click.option("--coordinator", "coordinator_id", type=int, help="act as this coordinator")
    def hours_approve(ids, coordinator_id):
        """Approve pending hour records by id (credits the time bank once)."""
        decide_hours(ids, True, "", coordinator_id)

    @hours.command("reject")
    @click.argument("ids", nargs=-1, required=True, type=int)
    @click.option("--reason", required=True)
    @click.option("--coordinator", "coordinator_id", type=int)
    def hours_reject(ids, reason, coordinator_id):
        """Reject pending hour records by id, with a reason."""
        decide_hours(ids, False, reason, coordinator_id)

    @hours.command("list")
    @click.option("--volunteer", "number")
    @click.option("--state", type=click.Choice(["pending", "approved", "rejected"]))
    @click.option("--limit", default=50, type=int)
    def hours_list(number, state, limit):
        """List hour records, newest first."""
        from store.models import HourRecord

        with operator_session() as (svc, s):
            q = select(HourRecord).order_by(HourRecord.started_at.desc(), HourRecord.id.desc()).limit(limit)
            if number:
                q = q.where(HourRecord.volunteer_id == _volunteer(s, number).id)
            if state:
                q = q.where(HourRecord.state == state)
            for r in s.scalars(q):
                click.echo(f"{r.id}\t{r.volunteer.number}\t{r.source}\t{r.started_at:%Y-%m-%d %H:%M}Z\t"
                           f"{r.minutes} min\t{r.state}" + (f"\t{r.reason}" if r.reason else ""))

    @bank.command("audit")
    def timebank_audit():
        """Prove every balance equals the sum of its entries and the pool's in and out
        match its balance (rules.timebank.audit); exit 1 on any problem."""
        from rules import timebank

        with operator_session() as (svc, s):
            report = timebank.audit(s)
        finish_audit(report.problems, f"time bank: {report.accounts} accounts, {report.transactions} transactions, "
                                      f"pool in {report.pool_in} - out {report.pool_out} = {report.pool_balance} min")

    @bank.command("reverse")
    @click.argument("tx_id", type=int)
    @click.option("--reason", required=True)
    def timebank_reverse(tx_id, reason):
        """Post the opposite of transaction TX_ID (a new entry; nothing is edited)."""
        from rules import timebank, volunteering
        from store.models import TimeTransaction

        with operator_session() as (svc, s):
            tx = s.get(TimeTransaction, tx_id)
            if tx is None:
                raise click.ClickException(f"no transaction {tx_id}")
            try:
                rev = timebank.reverse(s, tx, actor="cli", reason=reason, now=svc.clock.now(),
                                       cap=volunteering.rules().bank.cap_minutes)
            except timebank.TimeBankError as e:
                raise click.ClickException(str(e)) from None
            click.echo(f"transaction {rev.id} reverses {tx_id}")

    @bank.command("statement")
    @click.argument("number")
    @click.option("--limit", default=20, type=int)
    def timebank_statement(number, limit):
        """A volunteer's passbook: balance and latest entries, each with the balance after."""
        from rules import timebank

        with operator_session() as (svc, s):
            vol = _volunteer(s, number)
            click.echo(f"{vol.number}: balance {timebank.balance(s, vol)} min")
            for line in timebank.passbook(s, timebank.account_for(s, vol, lock=False), limit=limit):
                approved = f"\tapproved by {line.approved_by}" if line.approved_by else ""
                click.echo(f"{line.tx_id}\t{line.at:%Y-%m-%d %H:%M}Z\t{line.label}\t{line.minutes:+d}\t"
                           f"= {line.balance_after}\t{line.actor}\t{line.reason}{approved}")

    @coordinator.command("add")
    @click.option("--team", "team_code", required=True)
    @click.option("--openid", required=True)
    @click.option("--name", required=True)
    @click.option("--role", default=None, help="brigade|detachment|squad (default: from the team)")
    def coordinator_add(team_code, openid, name, role):
        """Make the follower OPENID a coordinator of team CODE (its subtree)."""
        from rules import teams
        from store.models import Coordinator, Follower

        with operator_session() as (svc, s):
            team = teams.by_code(s, team_code)
            if team is None:
                raise click.ClickException(f"no team {team_code}")
            follower = s.scalar(select(Follower).where(Follower.openid == openid))
            if follower is None:
                follower = Follower(openid=openid, subscribed=False)
                s.add(follower)
                s.flush()
            coord = s.scalar(select(Coordinator).where(Coordinator.follower_id == follower.id))
            if coord is None:
                coord = Coordinator(follower_id=follower.id, team_id=team.id, name=name)
                s.add(coord)
            coord.team_id, coord.name, coord.active = team.id, name, True
            coord.role = role or {"brigade": "brigade", "detachment": "detachment",
                                  "professional": "detachment"}.get(team.kind, "squad")
            s.flush()
            click.echo(f"coordinator {coord.id}: {name} of {team.code} ({team.name})")
