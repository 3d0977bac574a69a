"""`volbot wechat-emulator`: serve the local WeChat API emulator. A tool's command, added to
`volbot` through the `volbot.commands` entry point (the shell imports no tool)."""

from __future__ import annotations

import click


def register(main: click.Group) -> None:
    @main.command("wechat-emulator")
    @click.option("--host", default="127.0.0.1")
    @click.option("--port", default=8100, type=int)
    @click.option("--callback-url", default="http://127.0.0.1:8000/wechat",
                  help="Where TEMPLATESENDJOBFINISH events go (our webhook); '' for none.")
    def wechat_emulator(host, port, callback_url):
        """Serve the local WeChat API emulator (point WECHAT_API_BASE at it)."""
        from bot.config import load_config
        from emulator import create_emulator, make_emulator_server

        config = load_config()
        app = create_emulator({config.wechat_appid: config.wechat_secret}, token=config.wechat_token,
                              aes_key=config.wechat_aes_key, callback_url=callback_url or None)
        click.echo(f"WeChat emulator on http://{host}:{port}/cgi-bin/  "
                   f"(WECHAT_API_BASE=http://{host}:{port}/cgi-bin/; record: /_emulator/stats, /_emulator/calls)")
        server = make_emulator_server(app, host, port)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()
