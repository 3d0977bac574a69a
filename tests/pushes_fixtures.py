"""Fixtures for the push tests: the WeChat emulator on a loopback port, an API client and a
push dispatcher pointed at it, and a helper that drains the RQ queue in-process.

tests/conftest.py registers them (`pytest_plugins`): a test names the fixtures it uses as arguments.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import pytest
import requests

from emulator import create_emulator, make_emulator_server
from pushes.client import ApiClient
from pushes.worker import Dispatcher, PushSettings, install, push_queue
from tests.conftest import TEST_APPID, TEST_TOKEN


@dataclass
class Emulator:
    """The running emulator: its API base URL and its admin API."""

    url: str
    app: object

    @property
    def base(self) -> str:
        return self.url + "/cgi-bin/"

    @property
    def state(self):
        return self.app.extensions["emulator"]

    def admin(self, path: str, **body) -> dict:
        resp = requests.post(f"{self.url}/_emulator/{path}", json=body, timeout=10)
        resp.raise_for_status()
        return resp.json()

    def fault(self, **spec) -> None:
        self.admin("faults", **spec)

    def stats(self) -> dict:
        return requests.get(f"{self.url}/_emulator/stats", timeout=10).json()

    def calls(self, endpoint: str | None = None) -> list[dict]:
        params = {"endpoint": endpoint} if endpoint else {}
        return requests.get(f"{self.url}/_emulator/calls", params=params, timeout=10).json()

    def messages(self, openid: str | None = None) -> list[dict]:
        params = {"openid": openid} if openid else {}
        return requests.get(f"{self.url}/_emulator/messages", params=params, timeout=10).json()

    def wait_callbacks(self) -> None:
        assert self.admin("wait-callbacks", timeout=10)["idle"]


@pytest.fixture(scope="session")
def emulator_server(services):
    app = create_emulator({TEST_APPID: services.config.wechat_secret}, token=TEST_TOKEN)
    server = make_emulator_server(app)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield Emulator(f"http://127.0.0.1:{server.server_port}", app)
    server.shutdown()


@pytest.fixture
def emulator(emulator_server, svc):
    """A fresh emulator state (and clean SQL/Redis through `svc`) for each test."""
    emulator_server.admin("settings", callback_url=None, template_daily_quota=100_000, token_ttl=7200)
    emulator_server.admin("reset")
    requests.delete(f"{emulator_server.url}/_emulator/faults", timeout=10)
    return emulator_server


@pytest.fixture
def api(emulator, svc):
    return ApiClient(TEST_APPID, svc.config.wechat_secret, svc.redis, api_base=emulator.base)


FAST = PushSettings(rate=1000, max_attempts=4, lease_seconds=60, chunk=50, backoff=10, backoff_max=600)


@pytest.fixture
def dispatcher(svc, api):
    d = Dispatcher(svc, client=api, settings=FAST)
    install(d)
    yield d
    install(None)


def drain(svc) -> int:
    """Run every queued push job in this process (an RQ SimpleWorker in burst mode)."""
    from rq import SimpleWorker

    queue = push_queue(svc.redis)
    before = queue.count
    SimpleWorker([queue], connection=svc.redis).work(burst=True, logging_level="WARNING")
    return before
