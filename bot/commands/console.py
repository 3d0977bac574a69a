"""`volbot console`: coordinator logins for the web console.

    volbot console add-user --team CODE --username U --role brigade|detachment|squad [--name 姓名]
    volbot console set-password --username U
    volbot console deactivate --username U
    volbot console reset-2fa --username U
    volbot console prune-audit

A new password, a deactivation and a second-factor reset end every open session of the
account at once.

The password is read from `VOLBOT_CONSOLE_PASSWORD` when set (for scripts), else asked
for twice without echo. It is never printed or logged.
"""

from __future__ import annotations

import sys

import click
from sqlalchemy import func, select

from bot.commands import operator_session


def _password() -> str:
    from bot.config import load_config

    value = load_config().console_password  # VOLBOT_CONSOLE_PASSWORD
    if value:
        return value
    return click.prompt("Password", hide_input=True, confirmation_prompt=True)


def _fail(message: str) -> None:
    click.echo(f"volbot console: {message}", err=True)
    sys.exit(1)


def _by_username(session, username: str):
    from store.models import Coordinator

    c = session.scalar(select(Coordinator).where(func.lower(Coordinator.username) == username.lower()))
    if c is None:
        _fail(f"no console user {username!r}")
    return c


def _end_sessions(svc, coordinator) -> int:
    from console.sessions import SessionStore

    return SessionStore(svc.redis, svc.clock, svc.config.console_idle_minutes * 60).end_all(coordinator.id)


def register(main) -> None:
    @main.group("console")
    def console_group():
        """Coordinator logins for the web console (/console)."""

    @console_group.command("add-user")
    @click.option("--team", "team_code", required=True, help="Team code (e.g. KW-DG).")
    @click.option("--username", required=True)
    @click.option("--role", required=True, type=click.Choice(["brigade", "detachment", "squad"]))
    @click.option("--name", default=None, help="Display name (default: the username).")
    def add_user(team_code, username, role, name):
        """Create a console login for a coordinator of TEAM."""
        from console.accounts import AccountError, create_account

        password = _password()
        try:
            with operator_session() as (_, s):
                coordinator = create_account(s, team_code=team_code, username=username, role=role,
                                             password=password, name=name)
                click.echo(f"created console user {coordinator.username} ({role}) for team {team_code}")
        except AccountError as e:
            _fail(str(e))

    @console_group.command("set-password")
    @click.option("--username", required=True)
    def set_password(username):
        """Set a new password, end the user's sessions and lift their login delays."""
        from console.accounts import AccountError, hash_password
        from console.throttle import LoginThrottle

        password = _password()
        try:
            with operator_session() as (svc, s):
                coordinator = _by_username(s, username)
                coordinator.password_hash = hash_password(password)
                s.flush()
                ended = _end_sessions(svc, coordinator)
                LoginThrottle(svc.redis, svc.clock).clear_account(username)
            click.echo(f"password set for {username}; {ended} open session(s) ended")
        except AccountError as e:
            _fail(str(e))

    @console_group.command("deactivate")
    @click.option("--username", required=True)
    def deactivate(username):
        """Stop a login at once: its open sessions end."""
        with operator_session() as (svc, s):
            coordinator = _by_username(s, username)
            coordinator.active = False
            ended = _end_sessions(svc, coordinator)
        click.echo(f"deactivated {username}; {ended} open session(s) ended")

    @console_group.command("reset-2fa")
    @click.option("--username", required=True)
    def reset_2fa(username):
        """Remove a user's second factor (a lost phone and no recovery code): their sessions
        end, and a role that requires one enrols again at the next login."""
        from console import twofactor

        with operator_session() as (svc, s):
            coordinator = _by_username(s, username)
            twofactor.disable(s, coordinator)
            ended = _end_sessions(svc, coordinator)
        click.echo(f"second factor removed for {username}; {ended} open session(s) ended")

    @console_group.command("prune-audit")
    def prune_audit():
        """Delete audit log entries older than VOLBOT_AUDIT_RETENTION_DAYS (the scheduler
        does this hourly too)."""
        from bot.cli import build_services
        from rules.audit import prune

        svc = build_services()
        try:
            with svc.db.session() as s:  # prune commits batch by batch
                days = svc.config.audit_retention_days
                removed = prune(s, svc.clock.now(), days)
        finally:
            svc.close()
        click.echo(f"removed {removed} audit log entries older than {days} days" if days
                   else "VOLBOT_AUDIT_RETENTION_DAYS is 0: every entry is kept")
