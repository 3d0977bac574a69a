"""Fixtures for the pages at /m: the real app on a loopback port whose WeChat client talks to
the WeChat emulator (OAuth, the JS-SDK ticket), and a browser-like session signed in through
the real OAuth round trip (emulator → authorize → code → callback → cookie).

tests/conftest.py registers them (`pytest_plugins`).
"""

from __future__ import annotations

import threading

import pytest
import requests
from werkzeug.serving import make_server

from bot.app import create_app
from pushes.client import ApiClient
from tests.conftest import TEST_APPID


@pytest.fixture(scope="session")
def pages_server(services, emulator_server):
    app = create_app(services=services)
    app.extensions["volbot.wechat"] = lambda: ApiClient(TEST_APPID, services.config.wechat_secret, services.redis,
                                                        api_base=emulator_server.base)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


@pytest.fixture
def m(pages_server, svc, emulator):
    """The pages' base URL, with clean SQL, Redis and emulator state."""
    return pages_server


def open_as(emulator, base: str, openid: str, path: str = "/m/") -> tuple[requests.Session, requests.Response]:
    """Open `path` in the "in-app browser" of `openid`: the whole OAuth round trip, as WeChat does it."""
    http = requests.Session()
    resp = http.get(emulator.url + "/_emulator/webview", params={"openid": openid, "url": base + path}, timeout=10)
    return http, resp


def csrf(html: str) -> str:
    import re

    found = re.search(r'name="csrf_token" value="([0-9a-f]+)"', html)
    assert found, "no CSRF token on the page"
    return found.group(1)
