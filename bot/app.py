"""The Flask application factory."""

from __future__ import annotations

import logging
from importlib.metadata import entry_points

from flask import Flask, jsonify
from flask.sessions import SecureCookieSessionInterface

from bot.config import Config, load_config
from bot.pipeline import Pipeline
from bot.services import Services


def create_app(config: Config | None = None, services: Services | None = None) -> Flask:
    config = config or (services.config if services else load_config())
    services = services or Services(config)
    app = Flask(__name__, instance_path=str(config.instance_path))
    app.config.update(
        SECRET_KEY=config.secret_key,
        MAX_CONTENT_LENGTH=config.max_body,
        VOLBOT=config,
    )
    app.session_interface = CookieSessionsOffTheWebhook()
    app.extensions["volbot"] = services
    app.extensions["volbot.pipeline"] = Pipeline(services)
    logging.basicConfig(level=logging.INFO)
    from bot import observability  # request ids, JSON logs, /metrics

    observability.install(app, services)
    from bot import hardening  # security headers, cookie flags, the client address behind proxies

    hardening.install(app, production=config.env == "production", hsts_seconds=config.hsts_seconds)
    hardening.trust_proxies(app, config.trusted_proxies)

    from bot.webhook import webhook

    app.register_blueprint(webhook)
    from console import console  # the coordinators' web console at /console
    app.register_blueprint(console)
    from pages import pages  # the web pages inside WeChat at /m
    from pushes.client import client_for

    app.register_blueprint(pages)
    hardening.allow(app, "pages", frame_ancestors="'self'")  # the simulator's phone frames them
    # The pages reach WeChat (OAuth, the JS-SDK ticket) only through the one API client.
    app.extensions["volbot.wechat"] = lambda: client_for(config, services.redis)
    # Tools' pages (the simulator, refused outside development/demo) plug in through the
    # `volbot.web` entry point: the shell imports no tool.
    for plugin in sorted(entry_points(group="volbot.web"), key=lambda ep: ep.name):
        app.register_blueprint(plugin.load())

    @app.get("/healthz")
    def healthz():
        return jsonify(status="ok")

    @app.get("/readyz")
    def readyz():
        checks = {}
        for name, probe in (("database", services.db.ping), ("redis", services.redis.ping)):
            try:
                probe()
                checks[name] = "ok"
            except Exception as e:  # noqa: BLE001 - any failure of a probe is that backend down
                checks[name] = f"down: {type(e).__name__}"
        ok = all(v == "ok" for v in checks.values())
        return jsonify(status="ok" if ok else "unavailable", **checks), (200 if ok else 503)

    return app


class CookieSessionsOffTheWebhook(SecureCookieSessionInterface):
    """The console's signed-cookie sessions. WeChat's pushes carry no cookie: the webhook
    gets Flask's null session, without a signer built and a cookie looked for on every push;
    the pages at /m keep their own cookie (pages.web) and need none either."""

    def open_session(self, app, request):
        if request.path == "/wechat" or request.path.startswith("/m/"):  # /m signs its own cookie
            return None  # Flask substitutes its null session and never saves it
        return super().open_session(app, request)
