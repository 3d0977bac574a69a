"""`volbot demo [--reset]`: try the whole service on one machine (see `demo.supervisor`). A
tool's command, added to `volbot` through the `volbot.commands` entry point."""

from __future__ import annotations

import sys

import click


def register(main) -> None:
    @main.command()
    @click.option("--reset", is_flag=True, help="Start clean: empty the database and Redis first.")
    @click.option("--host", default="127.0.0.1", show_default=True, help="Loopback address to serve on.")
    @click.option("--port", default=8000, type=int, show_default=True, envvar="VOLBOT_DEMO_PORT",
                  help="Port of the webhook, console and simulator.")
    @click.option("--emulator-port", default=8100, type=int, show_default=True,
                  envvar="VOLBOT_DEMO_EMULATOR_PORT", help="Port of the WeChat API emulator.")
    def demo(reset, host, port, emulator_port):
        """Migrate, seed the demo district if empty, and run webhook + console + simulator,
        queue worker, scheduler and WeChat API emulator until Ctrl-C."""
        from demo.supervisor import run

        sys.exit(run(main, host=host, port=port, emulator_port=emulator_port, reset=reset))
