"""Helpers for the protocol/webhook tests: finding the shared WeChat samples, serving an
extra live app (other token, dead Redis, stopped database) and a test-only command whose
side effect (one SQL row per run) makes dedup and locking observable.

Imported only by tests; the test command is registered on first use and only once.
"""

from __future__ import annotations

import copy
import socket
import threading
import time
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

from sqlalchemy import func, select
from werkzeug.serving import make_server

from bot.app import create_app
from bot.protocol import Protocol
from bot.services import Services
from store.models import CoordinatorMessage

REPO = Path(__file__).resolve().parents[1]


def find_samples() -> Path:
    """The WeChat vectors and fixtures shipped in tests/fixtures/wechat-samples (copied, with
    their sources, from the official docs, wechatpy and WeRoBot: see its README)."""
    path = REPO / "tests" / "fixtures" / "wechat-samples"
    if not (path / "fixtures" / "MANIFEST.json").is_file():
        raise RuntimeError(f"WeChat sample vectors missing from the repository: {path}")
    return path


def free_port() -> int:
    """A loopback port nothing listens on (for a server to start on, or a dead service)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serve(app):
    """Serve a Flask app on a free loopback port for the duration of the block."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(5)


def with_protocol(services: Services, **overrides) -> Services:
    """The same database and Redis with another account (token, appid, AES key...)."""
    clone = copy.copy(services)
    clone.config = replace(services.config, **overrides)
    c = clone.config
    clone.protocol = Protocol(c.wechat_token, c.wechat_appid, c.wechat_aes_key, c.timestamp_tolerance)
    return clone


def broken_services(services: Services, **config_overrides) -> Services:
    """Services built like production ones but pointing at a dead Redis or database,
    without the start-up check (which would refuse them)."""
    config = replace(services.config, **config_overrides)
    return Services(config, check=False)


@contextmanager
def live(services: Services):
    app = create_app(services=services)
    with serve(app) as url:
        yield url


# ---- a test-only command with an observable side effect ---------------------------------

COUNTER_KEY = "TEST_COUNTER"
COUNTER_WORD = "计数"
COUNTER_FLOW = "test_counter"
SLEEP = {"seconds": 0.3}


def install_counter() -> None:
    """Register TEST_COUNTER (word 计数): sleeps, then records its run as one SQL row
    holding the wall-clock interval it ran in. Safe to call many times."""
    from handlers import registry

    if COUNTER_KEY in registry.commands:
        return

    @registry.command(COUNTER_KEY, COUNTER_WORD)
    def counter(ctx, message):
        started = time.time()
        time.sleep(SLEEP["seconds"])
        ctx.session.add(CoordinatorMessage(flow=COUNTER_FLOW, step=message.openid[:64],
                                           text=f"{started:.6f} {time.time():.6f}"))
        return f"已计数 {message.msg_id}"


def counter_runs(services: Services) -> list[tuple[str, float, float]]:
    with services.db.transaction() as session:
        rows = session.execute(select(CoordinatorMessage.step, CoordinatorMessage.text)
                               .where(CoordinatorMessage.flow == COUNTER_FLOW)).all()
    return [(openid, *map(float, text.split())) for openid, text in rows]


def count_rows(services: Services, model) -> int:
    with services.db.transaction() as session:
        return session.scalar(select(func.count()).select_from(model))
