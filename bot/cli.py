"""`volbot`: the one command for operators and developers.

Each sub-command builds what it needs from the same configuration. A configuration
problem prints one line (`volbot: WECHAT_AES_KEY: ...`) and exits with status 2.
"""

from __future__ import annotations

import sys

import click

from bot.config import ConfigError, load_config


class VolbotGroup(click.Group):
    """Turns a ConfigError anywhere below into one clear line."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except ConfigError as e:
            click.echo(f"volbot: {e}", err=True)
            sys.exit(2)


@click.group(cls=VolbotGroup)
def main():
    """volunteer-bot: the WeChat Official Account of a district volunteer platform."""


def build_services(check: bool = True):
    from bot.services import Services

    return Services(load_config(), check=check)


# ---- database -----------------------------------------------------------------------

@main.group()
def db():
    """Database schema."""


@db.command("upgrade")
@click.option("--revision", default="head")
def db_upgrade(revision):
    """Apply Alembic migrations up to REVISION (default: head)."""
    services = build_services()
    try:
        services.db.upgrade(revision, keyring=services.keyring)
        click.echo(f"database at {revision}: {services.db.engine.url.render_as_string(hide_password=True)}")
    finally:
        services.close()


# ---- serving ------------------------------------------------------------------------

@main.command()
@click.option("--host", default="127.0.0.1")
@click.option("--port", default=8000, type=int)
def run(host, port):
    """Serve the webhook with the development server (threaded)."""
    from werkzeug.serving import run_simple

    from bot.app import create_app

    services = build_services()
    app = create_app(services=services)
    try:
        run_simple(host, port, app, threaded=True, use_reloader=False)
    finally:
        services.close()


@main.command()
@click.option("--url", default="http://127.0.0.1:8000/wechat", help="The webhook to talk to.")
@click.option("--openid", default="o_chat_user", help="Who you are in the chat.")
def chat(url, openid):
    """Chat with a running webhook in the terminal, exactly as WeChat would."""
    from bot.chat import run_chat

    run_chat(load_config(), url, openid)


if __name__ == "__main__":  # pragma: no cover
    main()


from bot.commands import register_all  # noqa: E402 - after `main` exists

register_all(main)
