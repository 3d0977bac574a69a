"""`volbot serve`: real gunicorn on a free port — it answers, its /metrics add up across
workers, HUP replaces the workers without a failed request, /readyz and the webhook behave
when Redis dies under it, SIGTERM stops it cleanly; a bad setting is one line."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
import requests

from bot.sender import WeChatSender
from tests.conftest import TEST_APPID, TEST_TOKEN
from tests.protocol_support import free_port
from tests.test_observability import sample

VOLBOT = str(Path(sys.executable).with_name("volbot"))
ROOT = Path(__file__).resolve().parents[1]


def serve_env(svc, tmp_path, redis_url: str | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PROMETHEUS", "WEB_CONCURRENCY"))}
    env.update(VOLBOT_INSTANCE=str(tmp_path), VOLBOT_ENV="testing", WECHAT_TOKEN=TEST_TOKEN,
               WECHAT_APPID=TEST_APPID, DATABASE_URL=svc.db.url, REDIS_URL=redis_url or svc.redis_url,
               WECHAT_API_BASE="http://127.0.0.1:9/cgi-bin/")
    env.pop("WECHAT_AES_KEY", None)
    return env


class Served:
    def __init__(self, env: dict, *args: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(Path(env["VOLBOT_INSTANCE"]) / "serve.log", "w+")
        self.proc = subprocess.Popen([VOLBOT, "serve", "--bind", f"127.0.0.1:{self.port}", *args], env=env,
                                     cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.output()
            try:
                if requests.get(self.url + "/healthz", timeout=2).ok:
                    return
            except requests.RequestException:
                time.sleep(0.2)
        raise AssertionError("volbot serve did not answer within 60 s:\n" + self.output())

    def output(self) -> str:
        if not self.log.closed:
            self.log.flush()
        return Path(self.log.name).read_text(errors="replace")[-3000:]

    def workers(self) -> set[int]:
        return {c.pid for c in psutil.Process(self.proc.pid).children() if "redis" not in c.name()}

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(30)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
            self.log.close()


def say(url: str, openid: str, text: str) -> requests.Response:
    sender = WeChatSender(TEST_TOKEN, TEST_APPID)
    params, body = sender.request(sender.text(openid, text), encrypt=False)
    return requests.post(url + "/wechat", params=params, data=body, timeout=10)


def test_serve_answers_counts_across_workers_reloads_on_hup_and_stops_on_term(svc, tmp_path):
    served = Served(serve_env(svc, tmp_path), "--workers", "2", "--threads", "2")
    try:
        assert served.proc.pid not in served.workers() and len(served.workers()) == 2
        for i in range(8):
            resp = say(served.url, f"o_serve_{i}", "菜单")
            assert resp.status_code == 200 and "菜单" in resp.text or "1." in resp.text, resp.text
        # Whichever worker answers the scrape, the counts are the sum over both.
        text = requests.get(served.url + "/metrics", timeout=10).text
        assert sample(text, "volbot_requests_total", outcome="reply") == 8
        assert sample(text, "volbot_reply_seconds_count") == 8
        assert requests.get(served.url + "/readyz", timeout=10).json()["status"] == "ok"
        # JSON log lines on stderr, and no openid in them.
        assert '"logger": "gunicorn.error"' in served.output() and "o_serve_" not in served.output()

        # HUP: new workers replace the old ones while requests keep being answered.
        old = served.workers()
        failures, answered, stop = [], [0], threading.Event()

        def hammer():
            while not stop.is_set():
                try:
                    if requests.get(served.url + "/healthz", timeout=5).status_code != 200:
                        failures.append("status")
                    answered[0] += 1
                except requests.RequestException as e:
                    failures.append(type(e).__name__)

        thread = threading.Thread(target=hammer)
        thread.start()
        served.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 45
        while time.monotonic() < deadline and (served.workers() & old or len(served.workers()) != 2):
            time.sleep(0.2)
        time.sleep(0.5)
        stop.set()
        thread.join()
        assert not served.workers() & old and len(served.workers()) == 2, served.output()
        assert failures == [] and answered[0] > 0
        assert say(served.url, "o_serve_after", "菜单").status_code == 200
    finally:
        code = served.stop()
    assert code == 0, served.output()
    assert "Shutting down: Master" in served.output()


@pytest.mark.skipif(not shutil.which("redis-server"), reason="needs redis-server to kill one")
def test_readyz_and_replies_when_redis_dies_under_gunicorn(svc, tmp_path):
    port = free_port()
    redis_proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                   "--appendonly", "no"], stdout=subprocess.DEVNULL)
    try:
        url = f"redis://127.0.0.1:{port}/0"
        for _ in range(50):
            if subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True).returncode == 0:
                break
            time.sleep(0.1)
        served = Served(serve_env(svc, tmp_path, redis_url=url), "--workers", "2", "--threads", "2")
        try:
            assert requests.get(served.url + "/readyz", timeout=10).status_code == 200
            redis_proc.terminate()
            redis_proc.wait(10)
            ready = requests.get(served.url + "/readyz", timeout=10)
            assert ready.status_code == 503 and ready.json()["redis"].startswith("down")
            assert ready.json()["database"] == "ok"
            started = time.monotonic()
            resp = say(served.url, "o_serve_redis_gone", "菜单")
            assert resp.status_code == 200 and "系统繁忙" in resp.text
            assert time.monotonic() - started < 4.5
            text = requests.get(served.url + "/metrics", timeout=10).text
            assert sample(text, "volbot_requests_total", outcome="busy") == 1
        finally:
            assert served.stop() == 0
    finally:
        if redis_proc.poll() is None:
            redis_proc.kill()


def test_a_bad_setting_stops_serve_with_one_line(tmp_path):
    env = {**os.environ, "VOLBOT_INSTANCE": str(tmp_path), "REDIS_URL": "redis://127.0.0.1:1/0",
           "DATABASE_URL": f"sqlite:///{tmp_path}/x.sqlite3"}
    done = subprocess.run([VOLBOT, "serve", "--bind", f"127.0.0.1:{free_port()}"], env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [done.stderr.strip()] and "REDIS_URL: cannot connect" in done.stderr


def test_kept_alive_connections_are_spread_over_the_workers(svc, tmp_path):
    """Each worker listens on a socket of its own (bot/gunicorn_worker.py): connections
    opened at once, and kept alive, land on every worker, not all on the first awake."""
    served = Served(serve_env(svc, tmp_path), "--workers", "2", "--threads", "2")
    try:
        ready = Path(tmp_path) / "gunicorn-ready"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(list(ready.iterdir())) < 2:
            time.sleep(0.1)
        # A listening socket per worker (its own inode), none in the master.
        listeners = {pid: {os.readlink(f"/proc/{pid}/fd/{c.fd}") for c in psutil.Process(pid).net_connections("tcp")
                           if c.status == psutil.CONN_LISTEN and c.laddr.port == served.port}
                     for pid in served.workers() | {served.proc.pid}}
        assert listeners.pop(served.proc.pid) == set()
        assert all(len(own) == 1 for own in listeners.values()) and len(set.union(*listeners.values())) == 2
        sessions = [requests.Session() for _ in range(16)]
        for s in sessions:
            assert s.get(served.url + "/healthz", timeout=10).status_code == 200
        holding = {pid: sum(1 for c in psutil.Process(pid).net_connections("tcp")
                            if c.status == psutil.CONN_ESTABLISHED and c.laddr.port == served.port)
                   for pid in served.workers()}
        assert sum(holding.values()) == 16 and min(holding.values()) >= 2, holding
        for s in sessions:
            s.close()
    finally:
        assert served.stop() == 0, served.output()


def test_a_socket_per_worker_only_for_tcp_binds(monkeypatch):
    from bot.gunicorn_conf import reuse_port_for

    assert reuse_port_for(["127.0.0.1:8000", "[::1]:8000"])
    assert not reuse_port_for(["unix:/run/volbot.sock"]) and not reuse_port_for(["fd://3"])
    monkeypatch.setenv("VOLBOT_REUSE_PORT", "0")
    assert not reuse_port_for(["127.0.0.1:8000"])
