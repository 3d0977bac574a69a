"""`volbot console`: coordinator logins for the web console.

    volbot console add-user --team CODE --username U --role brigade|detachment|squad [--name 姓名]
    volbot console set-password --username U
    volbot console deactivate --username U

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
        """Set a new password (and lift a login lock-out for the user)."""
        from console.accounts import AccountError, clear_throttle, hash_password

        password = _password()
        try:
            with operator_session() as (svc, s):
                _by_username(s, username).password_hash = hash_password(password)
                clear_throttle(svc.redis, username)
            click.echo(f"password set for {username}")
        except AccountError as e:
            _fail(str(e))

    @console_group.command("deactivate")
    @click.option("--username", required=True)
    def deactivate(username):
        """Stop a login at once (open sessions end on their next request)."""
        with operator_session() as (_, s):
            _by_username(s, username).active = False
        click.echo(f"deactivated {username}")
